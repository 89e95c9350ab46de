#!/usr/bin/env python3
"""Validates Home Assistant MQTT discovery configs against the schemas kept beside this script.

Input (a file argument, or stdin): one JSON object per line, {"topic": "...", "payload": "<config text>"}.
Each topic must be <prefix>/<component>/<node_id>/<object_id>/config with node and object ids in
HA's charset; each payload must be a JSON object valid under <component>.schema.json. Prints one line
per problem and `ok N` at the end; exits 1 on any problem.

`validate.py render`: renders templates the way Home Assistant's MQTT integration does (Jinja2,
sandboxed, with `value` the payload text and `value_json` the payload parsed as JSON). Input lines
{"template": "...", "payload": "..."}; output one JSON string per line (the rendered text).
"""
import json
import pathlib
import re
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

HERE = pathlib.Path(__file__).resolve().parent
TOPIC = re.compile(r"^[A-Za-z0-9_/-]+/(?P<component>[a-z_]+)/(?P<node>[A-Za-z0-9_-]+)/(?P<object>[A-Za-z0-9_-]+)/config$")


def load_validators():
    schemas = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in HERE.glob("*.schema.json")}
    registry = Registry().with_resources(
        [(s["$id"], Resource.from_contents(s)) for s in schemas.values()]
    )
    validators = {}
    for name, s in schemas.items():
        Draft202012Validator.check_schema(s)
        component = name.removesuffix(".schema.json")
        if component != "common":
            validators[component] = Draft202012Validator(s, registry=registry)
    return validators


def render():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        item = json.loads(line)
        payload = item["payload"]
        try:
            value_json = json.loads(payload)
        except ValueError:
            value_json = None
        out = env.from_string(item["template"]).render(value=payload, value_json=value_json)
        print(json.dumps(out.strip()))
    return 0


def main():
    if sys.argv[1:2] == ["render"]:
        return render()
    validators = load_validators()
    src = open(sys.argv[1], encoding="utf-8") if len(sys.argv) > 1 else sys.stdin
    problems = 0
    count = 0
    for line in src:
        line = line.strip()
        if not line:
            continue
        item = json.loads(line)
        topic, text = item["topic"], item["payload"]
        m = TOPIC.match(topic)
        if not m:
            print(f"{topic}: not a discovery config topic")
            problems += 1
            continue
        v = validators.get(m["component"])
        if v is None:
            print(f"{topic}: no schema for component {m['component']!r}")
            problems += 1
            continue
        try:
            config = json.loads(text)
        except ValueError as e:
            print(f"{topic}: payload is not JSON: {e}")
            problems += 1
            continue
        count += 1
        for err in sorted(v.iter_errors(config), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in err.absolute_path) or "(root)"
            print(f"{topic}: {path}: {err.message}")
            problems += 1
    print(f"ok {count}" if problems == 0 else f"failed {problems}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
