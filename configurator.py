"""
The one config mechanism of every script (train.py, rl.py, eval.py, data.py, miniature/):

    python train.py configs/stable.py --lr=3e-4 --mixture="{'web': 0.9, 'qa': 0.1}"

A script's defaults are one dataclass at its top. Each config file named on the command line is plain
Python run with runpy: the names it defines override the defaults. Then each --key=value overrides
again, parsed to the default's type (bools take true/false, and a bare --flag is true; lists, dicts and
tuples are Python literals, and a list also takes one bare word: --inputs=web.jsonl). A key that is not a
default is an error that lists the valid ones.
"""
import ast
import dataclasses
import inspect
import json
import runpy
import sys


def configure(defaults, argv=None):
    """A copy of the dataclass instance `defaults` with the config files and --key=value of argv applied."""
    argv = sys.argv[1:] if argv is None else argv
    fields = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    overrides = {}
    for arg in argv:
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            key = key.replace("-", "_")
            check_key(key, fields, f"--{key}")
            if not eq and isinstance(fields[key], bool):
                value = "true"  # a bare --flag turns a boolean on
            elif not eq:
                raise ValueError(f"--{key} needs a value: write --{key}=VALUE")
            overrides[key] = parse_value(key, value, fields[key])
        else:
            names = runpy.run_path(arg)
            for key, value in names.items():
                if key.startswith("_") or inspect.ismodule(value) or inspect.isfunction(value) or inspect.isclass(value):
                    continue  # imports and helpers of the config file are not settings
                check_key(key, fields, arg)
                overrides[key] = value
    return dataclasses.replace(defaults, **overrides)


def check_key(key, fields, where):
    if key not in fields:
        raise ValueError(f"{where}: unknown config key '{key}'; valid keys: {', '.join(fields)}")


def parse_value(key, text, default):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--{key}={text}: expected true or false")
        return text.lower() in ("true", "1")
    if isinstance(default, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if default is None:
            return text  # an optional setting given a bare word, e.g. a path
        if isinstance(default, list):
            return [text]  # a list of paths given one bare path: --inputs=data/web.jsonl
        raise ValueError(f"--{key}={text}: not a valid {type(default).__name__} (the default is {default!r})") from None
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if default is not None and not isinstance(value, type(default)):
        raise ValueError(f"--{key}={text}: expected a {type(default).__name__} like the default {default!r}")
    return value


def config_json(config):
    """The resolved config as indented JSON (printed at start, saved as config.json)."""
    return json.dumps(dataclasses.asdict(config), indent=2, default=str)
