"""assurance-floor: a Warden policy plugin, in Python (componentize-py).

Denies a message when the device's identity assurance is below the floor its config sets:
a downlink command named in `commands` needs at least that level, an uplink point named in
`points` needs at least that level, and everything else needs at least `default` ("none" when
absent). Levels, weakest first: none < channel < shared-key < certificate.

    {"commands": {"set_setpoint": "shared-key"}, "points": {"temperature": "channel"},
     "default": "none"}

Names are interned with the host once, in `init`; `decide` compares integers and asks the host
for a name's text only to word a denial. A decision whose assurance meets the strongest floor
in the config returns without any host call.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

# The WIT `assurance` enum's names, in its (weakest-first) order.
LEVELS = ("none", "channel", "shared-key", "certificate")
_RANK = {name: i for i, name in enumerate(LEVELS)}
_CONFIG_KEYS = ("commands", "points", "default")


def _intern(name: str) -> int:
    """The host's symbol for `name` (the WIT's interning function; 0 when its table is full)."""
    return host.intern(name)


def _level(value, where: str) -> int:
    if not isinstance(value, str):
        raise Err(f"{where}: an assurance level must be a string, one of {', '.join(LEVELS)}")
    rank = _RANK.get(value)
    if rank is None:
        raise Err(f"unknown assurance level `{value}` ({where}; expected one of {', '.join(LEVELS)})")
    return rank


def _floors(config: dict, key: str) -> dict:
    """`config[key]` as {symbol: rank}."""
    table = config.get(key, {})
    if not isinstance(table, dict):
        raise Err(f"`{key}` must be an object mapping names to assurance levels")
    out = {}
    for name, value in table.items():
        rank = _level(value, f"{key}.{name}")
        sym = _intern(name)
        if sym == 0:
            raise Err(f"cannot intern `{name}`: the host's symbol table is full")
        out[sym] = rank
    return out


class WitWorld(wit_world.WitWorld):
    # Set by init; the defaults allow everything.
    commands: dict = {}
    points: dict = {}
    default: int = 0
    strongest: int = 0

    def init(self, config: str) -> None:
        try:
            parsed = json.loads(config)
        except ValueError as e:
            raise Err(f"config is not valid JSON: {e}")
        if not isinstance(parsed, dict):
            raise Err("config must be a JSON object with `commands`, `points` and `default`")
        for key in parsed:
            if key not in _CONFIG_KEYS:
                raise Err(f"unknown config key `{key}` (expected commands, points, default)")
        commands = _floors(parsed, "commands")
        points = _floors(parsed, "points")
        default = _level(parsed.get("default", "none"), "default")
        cls = WitWorld
        cls.commands, cls.points, cls.default = commands, points, default
        cls.strongest = max([default, *commands.values(), *points.values()])

    def decide(self, header: types.Header, request: host.Request) -> types.Verdict:
        has = header.assurance.value
        if has >= WitWorld.strongest:
            return types.Verdict_Allow()
        if header.direction == types.Direction.DOWNLINK:
            need = WitWorld.commands.get(request.name(), WitWorld.default)
            if has < need:
                return types.Verdict_Deny(_reason("command", request.name_text(), need, has))
            return types.Verdict_Allow()
        if header.point_count == 0:
            if has < WitWorld.default:
                return types.Verdict_Deny(_reason_unnamed(header.kind, WitWorld.default, has))
            return types.Verdict_Allow()
        points, default = WitWorld.points, WitWorld.default
        for i in range(header.point_count):
            need = points.get(request.point_name(i), default)
            if has < need:
                name = request.point_name_text(i) or ""
                return types.Verdict_Deny(_reason("point", name, need, has))
        return types.Verdict_Allow()


def _reason(what: str, name: str, need: int, has: int) -> str:
    return f"{what} `{name}` needs assurance {LEVELS[need]} or better; device has {LEVELS[has]}"


def _reason_unnamed(kind: types.Kind, need: int, has: int) -> str:
    kind_name = kind.name.lower().replace("_", "-")
    return f"{kind_name} needs assurance {LEVELS[need]} or better; device has {LEVELS[has]}"
