// Vite builds the dashboard into the Python package, which serves it at "/" (index.html) and
// "/assets" (everything else). `npm run dev` proxies /api to a twin on 127.0.0.1:8000.
import { defineConfig } from 'vite';

const backend = process.env.CITYTWIN_BACKEND || 'http://127.0.0.1:8000';

export default defineConfig({
  base: '/',
  build: {
    outDir: '../citytwin/static',
    emptyOutDir: true,
    assetsDir: 'assets',
    // MapLibre alone is ~1 MB minified; it is served locally, so a single chunk is fine.
    chunkSizeWarningLimit: 1500,
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    proxy: {
      '/api': { target: backend, changeOrigin: false },
      '/sta': { target: backend, changeOrigin: false },
    },
  },
});
