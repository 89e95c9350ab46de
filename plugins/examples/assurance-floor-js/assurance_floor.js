// assurance-floor: a Warden policy plugin, in JavaScript (componentize-js).
//
// Denies a message when the device's identity assurance is below the floor its config sets:
// a downlink command named in `commands` needs at least that level, an uplink point named in
// `points` needs at least that level, and everything else needs at least `default` ("none" when
// absent). Levels, weakest first: none < channel < shared-key < certificate.
//
//   {"commands": {"set_setpoint": "shared-key"}, "points": {"temperature": "channel"},
//    "default": "none"}
//
// Names are interned with the host once, in `init`; `decide` compares integers and asks the host
// for a name's text only to word a denial. A decision whose assurance meets the strongest floor
// in the config returns without any host call.

import { intern } from 'warden:policy/host@0.1.1';

// The WIT `assurance` enum's names, in its (weakest-first) order; the bindings pass enum cases
// as these strings.
const LEVELS = ['none', 'channel', 'shared-key', 'certificate'];
const RANK = new Map(LEVELS.map((name, i) => [name, i]));
const CONFIG_KEYS = new Set(['commands', 'points', 'default']);

// Set by init; the defaults allow everything.
let commands = new Map(); // symbol -> rank
let points = new Map(); // symbol -> rank
let floor = 0; // the default's rank
let strongest = 0;

// An `err` result of `init`: componentize-js turns a thrown exception into the error payload.
class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.payload = message;
  }
}

function isObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function level(value, where) {
  if (typeof value !== 'string') {
    throw new ConfigError(
      `${where}: an assurance level must be a string, one of ${LEVELS.join(', ')}`,
    );
  }
  const rank = RANK.get(value);
  if (rank === undefined) {
    throw new ConfigError(
      `unknown assurance level \`${value}\` (${where}; expected one of ${LEVELS.join(', ')})`,
    );
  }
  return rank;
}

function floors(config, key) {
  const table = config[key] ?? {};
  if (!isObject(table)) {
    throw new ConfigError(`\`${key}\` must be an object mapping names to assurance levels`);
  }
  const out = new Map();
  for (const [name, value] of Object.entries(table)) {
    const rank = level(value, `${key}.${name}`);
    const sym = intern(name);
    if (sym === 0) {
      throw new ConfigError(`cannot intern \`${name}\`: the host's symbol table is full`);
    }
    out.set(sym, rank);
  }
  return out;
}

export function init(config) {
  let parsed;
  try {
    parsed = JSON.parse(config);
  } catch (e) {
    throw new ConfigError(`config is not valid JSON: ${e.message}`);
  }
  if (!isObject(parsed)) {
    throw new ConfigError('config must be a JSON object with `commands`, `points` and `default`');
  }
  for (const key of Object.keys(parsed)) {
    if (!CONFIG_KEYS.has(key)) {
      throw new ConfigError(`unknown config key \`${key}\` (expected commands, points, default)`);
    }
  }
  const c = floors(parsed, 'commands');
  const p = floors(parsed, 'points');
  const d = level(parsed.default ?? 'none', 'default');
  commands = c;
  points = p;
  floor = d;
  strongest = Math.max(d, ...c.values(), ...p.values());
}

function reason(what, name, need, has) {
  return `${what} \`${name}\` needs assurance ${LEVELS[need]} or better; device has ${LEVELS[has]}`;
}

const ALLOW = { tag: 'allow' };

export function decide(header, request) {
  const has = RANK.get(header.assurance);
  if (has >= strongest) return ALLOW;
  if (header.direction === 'downlink') {
    const need = commands.get(request.name()) ?? floor;
    if (has < need) return { tag: 'deny', val: reason('command', request.nameText(), need, has) };
    return ALLOW;
  }
  const n = header.pointCount;
  if (n === 0) {
    if (has < floor) {
      return {
        tag: 'deny',
        val: `${header.kind} needs assurance ${LEVELS[floor]} or better; device has ${LEVELS[has]}`,
      };
    }
    return ALLOW;
  }
  for (let i = 0; i < n; i++) {
    const need = points.get(request.pointName(i)) ?? floor;
    if (has < need) {
      return { tag: 'deny', val: reason('point', request.pointNameText(i) ?? '', need, has) };
    }
  }
  return ALLOW;
}
