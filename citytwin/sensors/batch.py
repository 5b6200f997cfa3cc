"""OData ``$batch`` for SensorThings: multipart/mixed (with atomic changesets) and JSON batches.

Each GET runs on its own; each changeset runs in ONE transaction (all or nothing), with
``$<Content-ID>`` references to entities created earlier in the same changeset.
"""

from __future__ import annotations

import json
import re
import uuid
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

from citytwin.sensors.ingest import IngestError
from citytwin.sensors.odata import QueryError
from citytwin.sensors.service import (
    StaError,
    StaRequest,
    StaResponse,
    StaService,
    _WriteCtx,
    error_response,
)

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def _split(body: str, boundary: str) -> list[tuple[dict[str, str], str]]:
    parts = []
    for chunk in body.split("--" + boundary)[1:]:
        if chunk.startswith("--"):
            break
        chunk = chunk.lstrip("\r\n").replace("\r\n", "\n")
        head, _, content = chunk.partition("\n\n")
        headers = {}
        for line in head.split("\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        parts.append((headers, content))
    return parts


def _parse_http(content: str) -> tuple[str, str, dict[str, str], str]:
    head, _, body = content.partition("\n\n")
    lines = head.strip("\n").split("\n")
    try:
        method, url = lines[0].split()[:2]
    except ValueError:
        raise StaError(400, f"$batch: cannot parse request line {lines[0]!r}") from None
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.strip()}
    return method.upper(), url, headers, body.strip()


def _relative(url: str, ids: dict[str, str]) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    path = parts.path
    if "/v1.1/" in path:
        path = path.split("/v1.1/", 1)[1]
    path = path.lstrip("/")
    m = re.match(r"^\$([A-Za-z0-9_-]+)(.*)$", path)
    if m and m.group(1) in ids:
        path = ids[m.group(1)] + m.group(2)
    return path, dict(parse_qsl(parts.query, keep_blank_values=True))


def _run(svc: StaService, conn, req: StaRequest, ctx) -> StaResponse:
    try:
        return svc.dispatch(conn, req, ctx)
    except StaError as exc:
        return error_response(exc.status, exc.message)
    except IngestError as exc:
        return error_response(exc.status, str(exc))
    except QueryError as exc:
        return error_response(400, str(exc))


def _execute_group(svc: StaService, reqs: list[tuple[str | None, StaRequest]]) -> list[tuple[str | None, StaResponse]]:
    """Run requests in one transaction; on the first failure roll back and return that failure."""
    ctx = _WriteCtx()
    ids: dict[str, str] = {}
    out: list[tuple[str | None, StaResponse]] = []

    class _Abort(Exception):
        pass

    try:
        with svc.write_transaction() as conn:
            for cid, req in reqs:
                req.path, _ = _relative(req.path, ids)
                resp = _run(svc, conn, req, ctx)
                if resp.status >= 400:
                    out = [(cid, resp)]
                    raise _Abort
                if cid and "Location" in resp.headers:
                    ids[cid] = resp.headers["Location"].split("/v1.1/", 1)[-1]
                out.append((cid, resp))
            svc._flush(conn, ctx)
            events = svc._events(conn, ctx, reqs[0][1].base_url if reqs else svc.base_url)
    except _Abort:
        return out
    svc.notify(events)
    return out


def _get(svc: StaService, req: StaRequest) -> StaResponse:
    with svc.engine.connect() as conn:
        return _run(svc, conn, req, None)


def _http_part(resp: StaResponse, cid: str | None = None) -> str:
    reason = HTTPStatus(resp.status).phrase
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if cid:
        lines.append(f"Content-ID: {cid}")
    lines += ["", f"HTTP/1.1 {resp.status} {reason}"]
    for k, v in resp.headers.items():
        lines.append(f"{k}: {v}")
    body = ""
    if resp.body is not None:
        lines.append("Content-Type: application/json")
        body = json.dumps(resp.body) if resp.media_type == "application/json" else str(resp.body)
    lines += ["", body]
    return "\r\n".join(lines)


def handle_batch(svc: StaService, body: bytes, content_type: str, *, principal, base_url: str) -> StaResponse:
    """Serve a ``POST $batch``; returns a multipart/mixed or JSON response."""
    if content_type.startswith("application/json"):
        return _json_batch(svc, body, principal=principal, base_url=base_url)
    m = _BOUNDARY.search(content_type)
    if not content_type.startswith("multipart/mixed") or not m:
        return error_response(415, "$batch: send multipart/mixed with a boundary, or application/json")
    try:
        text = body.decode()
        out_boundary = f"batchresponse_{uuid.uuid4()}"
        chunks = []
        for headers, content in _split(text, m.group(1)):
            ctype = headers.get("content-type", "")
            if ctype.startswith("multipart/mixed"):
                cs = _BOUNDARY.search(ctype)
                if not cs:
                    raise StaError(400, "$batch: changeset without a boundary")
                reqs = []
                for h, c in _split(content, cs.group(1)):
                    method, url, hh, b = _parse_http(c)
                    if method == "GET":
                        raise StaError(400, "$batch: GET is not allowed inside a changeset")
                    reqs.append((h.get("content-id"), StaRequest(method, url, _relative(url, {})[1], b.encode() or None,
                                                                 hh.get("content-type", "application/json"), principal, base_url)))
                results = _execute_group(svc, reqs)
                cb = f"changesetresponse_{uuid.uuid4()}"
                inner = "".join(f"--{cb}\r\n{_http_part(r, cid)}\r\n" for cid, r in results) + f"--{cb}--"
                chunks.append(f"Content-Type: multipart/mixed; boundary={cb}\r\n\r\n{inner}")
            else:
                method, url, hh, b = _parse_http(content)
                path, query = _relative(url, {})
                req = StaRequest(method, path, query, b.encode() or None, hh.get("content-type", "application/json"),
                                 principal, base_url)
                resp = _get(svc, req) if method == "GET" else _execute_group(svc, [(None, req)])[0][1]
                chunks.append(_http_part(resp))
        payload = "".join(f"--{out_boundary}\r\n{c}\r\n" for c in chunks) + f"--{out_boundary}--\r\n"
    except StaError as exc:
        return error_response(exc.status, exc.message)
    except UnicodeDecodeError:
        return error_response(400, "$batch: the body is not UTF-8")
    return StaResponse(200, payload.encode(), media_type=f"multipart/mixed; boundary={out_boundary}")


def _json_batch(svc: StaService, body: bytes, *, principal, base_url: str) -> StaResponse:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        return error_response(400, f"malformed JSON: {exc}")
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        return error_response(400, "requests: missing; send {\"requests\": [{\"id\", \"method\", \"url\", \"body\"}]}")
    responses = []
    ids: dict[str, str] = {}
    for r in doc["requests"]:
        method = str(r.get("method", "GET")).upper()
        path, query = _relative(str(r.get("url", "")), ids)
        b = r.get("body")
        req = StaRequest(method, path, query, None if b is None else json.dumps(b).encode(),
                         "application/json", principal, base_url)
        resp = _get(svc, req) if method == "GET" else _execute_group(svc, [(None, req)])[0][1]
        if "Location" in resp.headers and r.get("id"):
            ids[str(r["id"])] = resp.headers["Location"].split("/v1.1/", 1)[-1]
        item = {"id": r.get("id"), "status": resp.status, "body": resp.body}
        if resp.headers:
            item["headers"] = {k.lower(): v for k, v in resp.headers.items()}
        responses.append(item)
    return StaResponse(200, {"responses": responses})
