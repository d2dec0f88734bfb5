"""Static checks of the container recipe, the pinned install and the CircleCI configuration.

Everything that can be decided from the files is checked here (hadolint, COPY sources and the
build context, runtime settings, the constraints file shared by .ci/run and the Dockerfile, the
CI configuration and the scripts it calls). The built image is run by
tests/test_container_image.py (.ci/run builds it with tools/build_image.sh) and by CircleCI's
build job (tools/smoke_test.sh).
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import rumba_bids

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
CONSTRAINTS = "requirements/constraints.txt"
CI_RUN = REPO / ".ci" / "run"
CIRCLECI = REPO / ".circleci" / "config.yml"
EXPECTED_OUTPUTS = "tests/data/expected_outputs.txt"
#: Installed next to the package in the image (see the Dockerfile); pinned like the rest.
CONTAINER_PACKAGES = ("bids-validator-deno",)


# -- helpers ------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    instructions, pieces = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also comment lines inside a continued instruction
        if stripped.endswith("\\"):
            pieces.append(stripped[:-1].rstrip())
            continue
        keyword, _, arguments = " ".join([*pieces, stripped]).partition(" ")
        pieces = []
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def docker_key_values(arguments: str) -> dict[str, str]:
    """``KEY=value KEY2="value 2"`` (LABEL, ENV, ARG) -> dict."""
    pairs = {}
    for token in shlex.split(arguments):
        key, sep, value = token.partition("=")
        pairs[key] = value if sep else None
    return pairs


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative, POSIX) out of the build context.

    Last matching pattern wins; ``!`` re-includes; a pattern matching a parent directory
    matches everything below it.
    """
    import fnmatch

    parents = [path] + [str(p) for p in Path(path).parents if str(p) != "."]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in parents):
            excluded = not negate
    return excluded


def pip_install_commands(text: str) -> list[list[str]]:
    """Every ``pip install ...`` command in a shell text, as token lists (after ``install``)."""
    commands = []
    for chunk in re.split(r"&&|;|\n|\|\|", text.replace("\\\n", " ")):
        if not re.search(r"\bpip install\b", chunk):
            continue
        tokens = shlex.split(chunk, comments=True)
        for i in range(len(tokens) - 1):
            if tokens[i] == "pip" and tokens[i + 1] == "install":
                commands.append(tokens[i + 2 :])
                break
    return commands


def option_values(tokens: list[str], *names: str) -> list[str]:
    return [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in names]


def read_constraints() -> dict[str, tuple[str, str]]:
    """``{canonical name: (name as written, version)}``; asserts the file is pins only."""
    pins, lines = {}, (REPO / CONSTRAINTS).read_text().splitlines()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=]+)", line)
        assert match, f"{CONSTRAINTS}:{number}: not a name==version pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{CONSTRAINTS}:{number}: {name} pinned twice"
        pins[name] = (match.group(1), match.group(2))
    return pins


def declared_requirements() -> tuple[list[Requirement], list[Requirement]]:
    """(install_requires, the test extra) of setup.cfg."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")

    def parse(text):
        return [Requirement(line) for line in text.splitlines() if line.strip()]

    return (
        parse(config["options"]["install_requires"]),
        parse(config["options.extras_require"]["test"]),
    )


def load_tool(name: str):
    """A module of tools/ (scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(
            f"{name} is not installed; it is part of the test extra: pip install -e .[test]"
        )
    return found


@pytest.fixture(scope="module")
def instructions():
    return dockerfile_instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def circleci() -> dict:
    return yaml.safe_load(CIRCLECI.read_text())


# -- Dockerfile ---------------------------------------------------------------------------


def test_hadolint_finds_nothing_at_any_level(tmp_path):
    hadolint = find_tool("hadolint")
    result = subprocess.run(
        [hadolint, "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [] and result.returncode == 0, findings or result.stderr

    # The check can fail: a recipe with well-known mistakes is reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nUSER root\n")
    result = subprocess.run(
        [hadolint, "--format", "json", str(bad)], capture_output=True, text=True, check=False
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3013", "DL3002"} <= codes, codes


def test_dockerfile_parser_joins_continuations():
    text = 'FROM a\n# note\nRUN x \\\n    # inner\n    && y\nLABEL k="v w" \\\n  z=1\n'
    assert dockerfile_instructions(text) == [
        ("FROM", "a"),
        ("RUN", "x && y"),
        ("LABEL", 'k="v w" z=1'),
    ]


def test_every_copy_source_exists_and_is_in_the_build_context(instructions):
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [shlex.split(args) for keyword, args in instructions if keyword in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing"
    for tokens in copies:
        assert not any(t.startswith("--from") for t in tokens), "multi-stage COPY: extend test"
        sources = [t for t in tokens[:-1] if not t.startswith("--")]
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY source {source} does not exist"
            assert not dockerignore_excludes(source, patterns), f".dockerignore drops {source}"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                if "__pycache__" not in relative:
                    assert not dockerignore_excludes(relative, patterns), relative
    # The package's data files must reach the image.
    assert not dockerignore_excludes("rumba_bids/data/spheres.npz", patterns)
    assert dockerignore_excludes(".venv/bin/python", patterns)
    assert dockerignore_excludes("rumba_bids/cli/__pycache__/run.cpython-311.pyc", patterns)


def test_image_runs_rumba_bids_as_non_root(instructions):
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["rumba-bids"]
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) > 0, "last USER must be a numeric non-root uid"
    assert not group or (group.isdigit() and int(group) > 0)


def test_environment_keeps_home_and_network_untouched(instructions):
    env = {}
    for keyword, args in instructions:
        if keyword == "ENV":
            env.update(docker_key_values(args))
    assert env["HOME"] == "/tmp", "HOME must be a directory writable by any uid"
    for cache in ("MPLCONFIGDIR", "DENO_DIR"):
        assert env[cache].startswith("/tmp/"), f"{cache} must be under the writable /tmp"
    assert env["NIPYPE_NO_ET"] == "1", "Nipype's version check would use the network"
    assert env["MPLBACKEND"] == "Agg"
    workdirs = [args for keyword, args in instructions if keyword == "WORKDIR"]
    assert workdirs[-1] == "/tmp"


def test_labels_name_version_source_and_licence(instructions):
    args, labels = {}, {}
    for keyword, arguments in instructions:
        if keyword == "ARG":
            args.update(docker_key_values(arguments))
        elif keyword == "LABEL":
            labels.update(docker_key_values(arguments))
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    oci = "org.opencontainers.image."
    assert args["VERSION"] == rumba_bids.__version__, "Dockerfile ARG VERSION != __version__"
    assert labels[oci + "version"] == "${VERSION}"
    assert labels[oci + "source"] == setup["metadata"]["url"]
    assert labels[oci + "licenses"] == setup["metadata"]["license"]
    for key in ("title", "description", "revision", "created"):
        assert labels.get(oci + key), f"missing label {oci}{key}"


def test_base_image_is_pinned_to_the_python_of_the_constraints(instructions):
    """FROM ${BASE_IMAGE}, a build argument declared before it (tools/build_image.sh passes a
    local stand-in where no registry is reachable) whose default is a pinned python image."""
    base = [args for keyword, args in instructions if keyword == "FROM"]
    assert base == ["${BASE_IMAGE}"], base
    assert instructions[0][0] == "ARG", "ARG BASE_IMAGE must come before FROM"
    default = docker_key_values(instructions[0][1]).get("BASE_IMAGE")
    pattern = r"python:(\d+)\.(\d+)\.(\d+)-slim(-\w+)?(@sha256:[0-9a-f]{64})?"
    match = re.fullmatch(pattern, default or "")
    assert match, f"default base image {default} is not a pinned python:X.Y.Z-slim image"
    header = re.search(r"CPython (\d+)\.(\d+)", (REPO / CONSTRAINTS).read_text())
    assert header and header.groups() == match.groups()[:2], (
        "requirements/constraints.txt was resolved for another Python than the image's"
    )


# -- one install for CI and the container --------------------------------------------------


def _check_pinned_install(commands: list[list[str]], where: str, package: str) -> None:
    assert commands, f"no pip install in {where}"
    for tokens in commands:
        assert CONSTRAINTS in option_values(tokens, "-c", "--constraint"), (
            f"{where}: pip install {' '.join(tokens)} does not use -c {CONSTRAINTS}"
        )
    installs = [tokens for tokens in commands if package in tokens]
    assert installs, f"{where} does not install {package}"
    for tokens in installs:
        assert CONSTRAINTS in option_values(tokens, "--build-constraint"), (
            f"{where}: the package is built without --build-constraint {CONSTRAINTS}"
        )
    upgrades = [tokens for tokens in commands if "pip" in tokens and "--upgrade" in tokens]
    assert upgrades, f"{where} does not install the pinned pip first"


def test_dockerfile_installs_with_the_constraints(instructions):
    runs = "\n".join(args for keyword, args in instructions if keyword == "RUN")
    commands = pip_install_commands(runs)
    _check_pinned_install(commands, "Dockerfile", ".")
    package_install = next(tokens for tokens in commands if "." in tokens)
    for name in CONTAINER_PACKAGES:
        assert name in package_install, f"the Dockerfile does not install {name}"
    assert "--no-cache-dir" in package_install


def test_ci_run_installs_with_the_same_constraints():
    commands = pip_install_commands(CI_RUN.read_text())
    _check_pinned_install(commands, ".ci/run", ".[test]")


def test_constraints_pin_every_declared_requirement():
    pins = read_constraints()
    runtime, test_extra = declared_requirements()
    container = [Requirement(name) for name in CONTAINER_PACKAGES]
    for requirement in runtime + test_extra + container:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in {CONSTRAINTS}"
        version = pins[name][1]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{CONSTRAINTS} pins {name}=={version}, outside setup.cfg's {requirement}"
        )
    for tool in ("pip", "setuptools", "wheel"):  # pip upgrade and the isolated build
        assert tool in pins, f"{tool} is not pinned"


def _installed_closure(roots: list[tuple[str, frozenset]]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a dependency of an extra that is not installed here
        seen.add((name, extras))
        for text in dist.requires or ():
            requirement = Requirement(text)
            active = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if active:
                todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return {name for name, _ in seen}


def test_constraints_cover_the_installed_dependency_closure():
    """Every distribution pulled in by rumba-bids[test] (+ the container's extras) is pinned."""
    pins = read_constraints()
    roots = [("rumba-bids", frozenset({"test"}))]
    roots += [(canonicalize_name(name), frozenset()) for name in CONTAINER_PACKAGES]
    closure = _installed_closure(roots) - {"rumba-bids"}
    assert len(closure) > 20, "dependency metadata not found: is rumba-bids installed?"
    missing = sorted(closure - set(pins))
    assert not missing, f"not pinned in {CONSTRAINTS}: {missing}; run tools/update_constraints.py"


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported by rumba_bids (outside try/except ImportError) -> files."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "rumba_bids").rglob("*.py"):
        tree = ast.parse(path.read_text())
        optional = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name)
                and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers
            ):
                optional.update(id(n) for stmt in node.body for n in ast.walk(stmt))
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "rumba_bids":
                    found.setdefault(top, set()).add(path.relative_to(REPO).as_posix())
    return found


def test_every_imported_package_is_a_declared_runtime_dependency():
    """What the package imports is in install_requires, so the container (which installs no
    test extra) has it -- and not merely by way of some dependency's dependency."""
    runtime, _ = declared_requirements()
    declared = {canonicalize_name(r.name) for r in runtime}
    distributions = metadata.packages_distributions()
    problems = []
    for module, files in sorted(_third_party_imports().items()):
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        if not dists & declared:
            problems.append(
                f"{module} ({', '.join(sorted(dists)) or 'not installed'}) in {sorted(files)}"
            )
    assert not problems, "imported but not in setup.cfg install_requires: " + "; ".join(problems)


# -- CircleCI -------------------------------------------------------------------------------


def _run_commands(config: dict):
    """(job, command text) of every run step."""
    for job_name, job in config["jobs"].items():
        for step in job["steps"]:
            if isinstance(step, dict) and "run" in step:
                run = step["run"]
                yield job_name, run if isinstance(run, str) else run["command"]


REPO_PATH = re.compile(
    r"(?<![\w/$.-])((?:\./)?(?:\.ci|\.circleci|tools|tests|requirements)/[\w./-]+)"
)


def test_circleci_config_parses_and_wires_its_jobs(circleci):
    assert str(circleci["version"]) == "2.1"
    jobs = circleci["jobs"]
    assert {"lint", "tests", "build", "deploy"} <= set(jobs)
    for job in jobs.values():
        executor = job.get("executor")
        assert executor in circleci.get("executors", {}) or "docker" in job or "machine" in job
    for workflow in circleci["workflows"].values():
        entries = [next(iter(entry.items())) for entry in workflow["jobs"]]
        names = {name for name, _ in entries}
        for name, options in entries:
            assert name in jobs, f"workflow runs undefined job {name}"
            for required in (options or {}).get("requires", []):
                assert required in names, f"{name} requires {required}, not in the workflow"


def test_deploy_runs_on_release_tags_after_everything_else(circleci):
    entries = dict(next(iter(e.items())) for e in circleci["workflows"]["ci"]["jobs"])
    deploy = entries["deploy"]
    assert set(deploy["requires"]) == {"lint", "tests", "build"}
    assert deploy["filters"]["branches"]["ignore"] == "/.*/"
    # CircleCI runs a job for a tag only if it and all jobs it requires have a tags filter.
    for name in ["deploy", *deploy["requires"]]:
        regex = entries[name]["filters"]["tags"]["only"]
        tag = re.compile(regex.strip("/"))
        assert tag.match("v0.1.0") and tag.match("1.2.3rc1"), (name, regex)
        assert not tag.match("v0.1.0-wip") and not tag.match("latest"), (name, regex)
    commands = dict(_run_commands(circleci))
    assert "docker push" in commands["deploy"]
    assert not any("docker push" in commands[job] for job in ("lint", "tests", "build"))


def test_circleci_calls_only_existing_scripts_and_files(circleci):
    referenced = set()
    for job, command in _run_commands(circleci):
        for line in command.splitlines():
            line = line.strip()
            for match in REPO_PATH.finditer(line):
                path = match.group(1).removeprefix("./").rstrip(".")
                referenced.add(path)
                assert (REPO / path).exists(), f"job {job} uses {path}, which does not exist"
                if line.startswith(match.group(1)):  # executed directly
                    assert os.access(REPO / path, os.X_OK), f"{path} is not executable"
    assert {".ci/run", "tools/smoke_test.sh"} <= referenced, referenced
    for script in sorted(p for p in referenced if p.endswith(".sh")):
        text = (REPO / script).read_text()
        subprocess.run(["bash", "-n", str(REPO / script)], check=True)
        for match in REPO_PATH.finditer(text.replace("$repo/", "")):
            path = match.group(1).rstrip(".")
            assert (REPO / path).exists(), f"{script} uses {path}, which does not exist"
        assert EXPECTED_OUTPUTS in text or script != "tools/smoke_test.sh"


def test_expected_outputs_list_exists_and_is_usable():
    expected = REPO / EXPECTED_OUTPUTS
    assert expected.is_file(), f"{EXPECTED_OUTPUTS} (the CLI tests' list) is missing"
    patterns = load_tool("check_outputs").read_expected(expected)
    assert patterns, f"{EXPECTED_OUTPUTS} lists no file"
    assert any("_model-rumba_param-fod_dwimap.nii.gz" in p for p in patterns)


def test_circleci_image_name_matches_the_boutiques_descriptor(circleci):
    descriptor = json.loads((REPO / "rumba_bids" / "data" / "boutiques.json").read_text())
    repository = descriptor["container-image"]["image"].rsplit(":", 1)[0]
    images = {
        executor.get("environment", {}).get("IMAGE")
        for executor in circleci["executors"].values()
        if "machine" in executor
    }
    assert images == {repository}


def test_check_outputs_matches_placeholders_within_one_directory(tmp_path, capsys):
    check_outputs = load_tool("check_outputs")
    patterns = ["dataset_description.json", "sub-01/log/<run_uuid>/settings.json", "**/*.html"]
    files = ["dataset_description.json", "sub-01/log/2026_abc/settings.json", "a/b/c.html"]
    assert check_outputs.compare(files, patterns) == ([], [])
    deeper = ["dataset_description.json", "sub-01/log/x/y/settings.json", "c.html"]
    assert check_outputs.compare(deeper, patterns) == (
        ["sub-01/log/x/y/settings.json"],
        ["sub-01/log/<run_uuid>/settings.json"],
    )

    out = tmp_path / "out"
    (out / "sub-01").mkdir(parents=True)
    (out / "sub-01" / "a.nii.gz").write_bytes(b"")
    expected = tmp_path / "expected.txt"
    expected.write_text("# comment\n\nsub-01/a.nii.gz\n")
    assert check_outputs.main([str(out), str(expected)]) == 0
    (out / "extra.json").write_text("{}")
    expected.write_text("sub-01/a.nii.gz\nsub-01/b.nii.gz  # the other one\n")
    assert check_outputs.main([str(out), str(expected)]) == 1
    err = capsys.readouterr().err
    assert "unexpected output: extra.json" in err and "missing output:    sub-01/b.nii.gz" in err
    assert check_outputs.main([str(tmp_path / "absent"), str(expected)]) == 2


def test_ci_builds_the_image_with_the_script_the_image_test_names(circleci):
    """.ci/run builds with tools/build_image.sh and hands the tag to tests/test_container_image.py
    (RUMBA_BIDS_TEST_IMAGE); CircleCI's build job uses the same script."""
    text = CI_RUN.read_text()
    build = text.index("bash tools/build_image.sh")
    assert "export RUMBA_BIDS_TEST_IMAGE=" in text[:build]
    assert text.index("pytest") > build, "the image must be built before the tests run"
    test_module = (REPO / "tests" / "test_container_image.py").read_text()
    assert 'os.environ.get("RUMBA_BIDS_TEST_IMAGE")' in test_module
    build_job = [command for job, command in _run_commands(circleci) if job == "build"]
    assert any("tools/build_image.sh" in command for command in build_job)
    subprocess.run(["bash", "-n", str(REPO / "tools" / "build_image.sh")], check=True)
