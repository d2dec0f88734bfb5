"""Regenerate ``rumba_bids/data/boutiques.json``, the Boutiques descriptor of ``rumba-bids``.

Run: ``python tools/make_boutiques.py`` (``--check``: exit 1 when the committed file differs).

The descriptor is derived from the argparse parser (``rumba_bids.cli.parser.build_parser``):
one input per option (its first long spelling as the flag), types, list sizes and choices from
the parser, the parser's argument groups and mutually exclusive groups, and the exit codes from
``rumba-bids -h``.  It follows Boutiques' BIDS-App template (``bosh validate --bids``): the
command line starts ``mkdir -p [OUTPUT_DIR]; rumba-bids [BIDS_DIR] [OUTPUT_DIR]
[ANALYSIS_LEVEL] [PARTICIPANT_LABEL] [SESSION_LABEL]`` and the output directory is the only
output.  ``tests/cli/test_boutiques.py`` checks that the committed file equals this script's
output and that its option set equals the parser's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "rumba_bids" / "data" / "boutiques.json"
#: Docker Hub repository of the released images (also in .circleci/config.yml and the README).
DOCKER_REPOSITORY = "rumbabids/rumba-bids"
URL = "https://github.com/rumba-bids/rumba-bids"

#: Path options naming something the app creates (Boutiques "String"); other paths are inputs
#: that must exist (Boutiques "File").
CREATED_PATHS = frozenset({"work_dir"})
#: Ranges the app enforces after parsing (rumba_bids.cli.parser._model_options).
NUMBER_BOUNDS = {
    "sh_order": {"minimum": 2},
    "peak_threshold": {"minimum": 0, "maximum": 1},
    "min_separation_angle": {"minimum": 0, "maximum": 90},
}
#: Actions that are modes of the program, not inputs of a run.
NOT_INPUTS = frozenset({"help", "version"})
#: Boutiques types of the parser's ``type=`` callables, by function name.
NUMBER_TYPES = {
    "int": {"integer": True},
    "float": {},
    "_positive_int": {"integer": True, "minimum": 1},
    "_positive_float": {"minimum": 0, "exclusive-minimum": True},
    "parse_memory_gb": {"minimum": 0, "exclusive-minimum": True},
}
STRING_TYPES = frozenset({"str", "strip"})  # strip: the BIDS label normaliser (_label)
#: Words written in capitals in input names.
ACRONYMS = frozenset({"bids", "csf", "gm", "wm", "omp", "sh", "tv", "n"})


def _value_key(dest: str) -> str:
    return f"[{dest.upper()}]"


def _flag(action: argparse.Action) -> str:
    """The spelling the descriptor uses: the first long option (hyphenated in our parser)."""
    long_options = [o for o in action.option_strings if o.startswith("--")]
    return (long_options or action.option_strings)[0]


def _name(dest: str) -> str:
    words = [w.upper() if w in ACRONYMS else w for w in dest.split("_")]
    return " ".join([words[0][0].upper() + words[0][1:], *words[1:]])


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        text = text % {**vars(action), "prog": prog}
    return " ".join(text.split())


def _type_fields(action: argparse.Action) -> dict:
    """Boutiques type, list and range fields of an argparse action."""
    if action.nargs == 0:  # store_true / store_false / count
        return {"type": "Flag"}
    fields: dict = {}
    kind = action.type
    name = getattr(kind, "__name__", None) if kind is not None else "str"
    if action.choices is not None:
        fields.update(type="String", **{"value-choices": [str(c) for c in action.choices]})
    elif kind is Path:
        fields["type"] = "String" if action.dest in CREATED_PATHS else "File"
    elif name in NUMBER_TYPES:
        fields.update(type="Number", **NUMBER_TYPES[name])
    elif name in STRING_TYPES:
        fields["type"] = "String"
    else:
        raise ValueError(
            f"option {action.dest}: no Boutiques type for type={kind!r}; add it to "
            "NUMBER_TYPES or STRING_TYPES in tools/make_boutiques.py"
        )
    fields.update(NUMBER_BOUNDS.get(action.dest, {}))
    if action.nargs == "+":
        fields.update({"list": True, "min-list-entries": 1})
    elif isinstance(action.nargs, int):
        fields.update({"list": True, "min-list-entries": action.nargs})
        fields["max-list-entries"] = action.nargs
    elif action.nargs not in (None, "?"):
        raise ValueError(f"option {action.dest}: nargs={action.nargs!r} is not supported")
    return fields


def _input(action: argparse.Action, prog: str, *, name: str | None = None) -> dict:
    entry = {
        "id": action.dest,
        "name": name or _name(action.dest),
        **_type_fields(action),
        "description": _help(action, prog),
        "value-key": _value_key(action.dest),
        "optional": bool(action.option_strings),
    }
    if action.option_strings:
        entry["command-line-flag"] = _flag(action)
    return entry


def _exit_codes(help_text: str) -> list[dict]:
    """``[{code, description}]`` from the ``exit codes:`` block of ``rumba-bids -h``."""
    codes, current = [], None
    for line in help_text.splitlines()[1:]:
        match = re.match(r"\s+(\d+)\s+(.*)", line)
        if match:
            current = {"code": int(match.group(1)), "description": match.group(2).strip()}
            codes.append(current)
        elif current is not None and line.strip():
            current["description"] += " " + line.strip()
    return [c for c in codes if c["code"] != 0]


def build_descriptor() -> dict:
    """The Boutiques descriptor implied by the current parser."""
    from rumba_bids import __version__
    from rumba_bids.cli import parser as cli_parser
    from rumba_bids.cli.errors import EXIT_CODE_HELP

    parser = cli_parser.build_parser()
    prog = parser.prog
    actions = [a for a in parser._actions if a.dest not in NOT_INPUTS]
    positionals = {a.dest: a for a in actions if not a.option_strings}
    expected = ["bids_dir", "output_dir", "analysis_level"]
    if list(positionals) != expected:
        raise ValueError(f"positional arguments {list(positionals)} are not {expected}")

    level = positionals["analysis_level"]
    inputs = [
        _input(positionals["bids_dir"], prog, name="BIDS dataset"),
        {
            "id": "output_dir_name",
            "name": "Output directory name",
            "type": "String",
            "description": _help(positionals["output_dir"], prog)
            + " (participant level: created if needed)",
            "value-key": "[OUTPUT_DIR]",
            "optional": True,
        },
        {
            "id": "participant_level_analysis_dir",
            "name": "Participant-level output directory",
            "type": "File",
            "description": "group level: the output_dir of earlier participant-level runs",
            "value-key": "[OUTPUT_DIR]",
            "optional": True,
        },
        {
            "id": "analysis_level",
            "name": "Analysis level",
            "type": "String",
            "value-choices": list(cli_parser.ANALYSIS_LEVELS),
            "description": _help(level, prog),
            "value-key": _value_key(level.dest),
            "optional": False,
        },
    ]
    optionals = [a for a in actions if a.option_strings]
    inputs += [_input(action, prog) for action in optionals]

    first_keys = ["[BIDS_DIR]", "[OUTPUT_DIR]", "[ANALYSIS_LEVEL]"]
    first_keys += ["[PARTICIPANT_LABEL]", "[SESSION_LABEL]"]
    other_keys = [_value_key(a.dest) for a in optionals]
    other_keys = [k for k in other_keys if k not in first_keys]
    command_line = f"mkdir -p [OUTPUT_DIR]; {prog} " + " ".join(first_keys + other_keys)

    groups = [
        {
            "id": "output_directory",
            "name": "Output directory",
            "description": "participant level: a directory name; group level: the output "
            "directory of the participant level",
            "members": ["output_dir_name", "participant_level_analysis_dir"],
            "mutually-exclusive": True,
            "one-is-required": True,
        }
    ]
    for group in parser._action_groups:
        members = [a.dest for a in group._group_actions if a in optionals]
        if members and group.title not in ("options", "optional arguments"):
            groups.append(
                {
                    "id": re.sub(r"\W+", "_", group.title).strip("_").lower(),
                    "name": group.title[0].upper() + group.title[1:],
                    "members": members,
                }
            )
    for exclusive in parser._mutually_exclusive_groups:
        members = [a.dest for a in exclusive._group_actions]
        groups.append(
            {
                "id": "_or_".join(members),
                "name": " or ".join(_flag(a) for a in exclusive._group_actions),
                "members": members,
                "mutually-exclusive": True,
            }
        )

    return {
        "name": prog,
        "tool-version": __version__,
        "description": parser.description.split("\n\n")[0].replace("\n", " "),
        "author": "rumba-bids developers",
        "url": URL,
        "command-line": command_line,
        "container-image": {"type": "docker", "image": f"{DOCKER_REPOSITORY}:{__version__}"},
        "schema-version": "0.5",
        "inputs": inputs,
        "groups": groups,
        "output-files": [
            {
                "id": "output_dir",
                "name": "Output directory",
                "description": "BIDS derivatives dataset (BEP016 names: model-rumba, "
                "param-<p>, dwimap), reports and logs",
                "path-template": "[OUTPUT_DIR]",
                "optional": False,
            }
        ],
        "error-codes": _exit_codes(EXIT_CODE_HELP),
        "tags": {
            "domain": ["neuroinformatics", "diffusion mri", "tractography"],
            "bids-app": True,
        },
    }


def render(descriptor: dict) -> str:
    return json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the file is out of date"
    )
    args = parser.parse_args(argv)
    text = render(build_descriptor())
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python tools/make_boutiques.py", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
