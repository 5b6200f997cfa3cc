// Every panel module, imported for its registerPanel() call. Add one line per new panel
// (sensors, crowd, incident, evacuation); `order` in each module decides the tab position.
import './city.js';
import './sensors.js';
import './crowd.js';
import './incident.js';
import './evacuation.js';
