"""Compare the files under a rumba-bids output directory with the expected list.

Usage: ``python tools/check_outputs.py OUTPUT_DIR [EXPECTED]``
(default EXPECTED: ``tests/data/expected_outputs.txt``, the list the CLI tests check).

EXPECTED holds one path per line, relative to OUTPUT_DIR; blank lines and ``#`` comments are
ignored.  Variable parts are written ``<name>`` (e.g. ``<run_uuid>``) or with ``*`` / ``?``; they
never match ``/``; ``**`` matches across directories.  Every file must match a line and every
line a file.  Exit status 0 when both hold, 1 otherwise (differences listed on stderr), 2 for
unusable arguments.  Standard library only: CircleCI runs it on the host, outside the image.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DEFAULT_EXPECTED = Path(__file__).resolve().parents[1] / "tests" / "data" / "expected_outputs.txt"


def read_expected(path: Path) -> list[str]:
    """Patterns of the expected-outputs file, in file order."""
    patterns = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            patterns.append(line.removeprefix("./"))
    return patterns


def pattern_to_regex(pattern: str) -> re.Pattern:
    """``<name>``, ``*``, ``?`` -> within one path component; ``**`` -> any depth."""
    parts = re.split(r"(\*\*/?|\*|\?|<[^<>/]+>)", pattern)
    regex = []
    for part in parts:
        if part.startswith("**"):
            regex.append("(?:.*/)?" if part.endswith("/") else ".*")
        elif part == "*" or (part.startswith("<") and part.endswith(">")):
            regex.append("[^/]*")
        elif part == "?":
            regex.append("[^/]")
        else:
            regex.append(re.escape(part))
    return re.compile("".join(regex) + r"\Z")


def compare(files: list[str], patterns: list[str]) -> tuple[list[str], list[str]]:
    """(files matching no pattern, patterns matching no file)."""
    compiled = [(p, pattern_to_regex(p)) for p in patterns]
    unexpected = [f for f in files if not any(rx.match(f) for _, rx in compiled)]
    missing = [p for p, rx in compiled if not any(rx.match(f) for f in files)]
    return unexpected, missing


def list_files(output_dir: Path) -> list[str]:
    """Relative POSIX paths of every file (and symlink) under ``output_dir``, sorted."""
    return sorted(
        p.relative_to(output_dir).as_posix()
        for p in output_dir.rglob("*")
        if p.is_file() or p.is_symlink()
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2 or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    output_dir = Path(argv[0])
    expected = Path(argv[1]) if len(argv) == 2 else DEFAULT_EXPECTED
    for path, what in ((output_dir, "output directory"), (expected, "expected-outputs file")):
        if not path.exists():
            print(f"check_outputs: {path}: {what} does not exist", file=sys.stderr)
            return 2
    files = list_files(output_dir)
    unexpected, missing = compare(files, read_expected(expected))
    for name in unexpected:
        print(f"unexpected output: {name}", file=sys.stderr)
    for pattern in missing:
        print(f"missing output:    {pattern}", file=sys.stderr)
    if unexpected or missing:
        print(
            f"check_outputs: {output_dir} differs from {expected} "
            f"({len(unexpected)} unexpected, {len(missing)} missing)",
            file=sys.stderr,
        )
        return 1
    print(f"check_outputs: all {len(files)} files of {output_dir} are as expected ({expected})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
