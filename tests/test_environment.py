"""pyproject.toml (pip) and environment.yml (conda, Binder) must list the same packages and version bounds."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# conda-forge name -> PyPI name, where they differ.
CONDA_TO_PIP = {"redis-py": "redis", "playwright-python": "playwright"}
# Tools, not dependencies of the course: in the conda file only.
CONDA_ONLY = {"python", "pip"}

SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?"
                  r"\s*(?:>=\s*([0-9][0-9.]*))?\s*(?:,\s*<\s*([0-9][0-9.]*))?$")


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. become one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str | None) -> tuple[int, ...] | None:
    """'4.6.0' -> (4, 6): trailing zeros do not change a bound."""
    if text is None:
        return None
    parts = [int(part) for part in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def parse_spec(spec: str) -> tuple[str, tuple | None]:
    """'name>=1.2' -> ('name', ((1, 2), None)); 'name>=1.2,<2' -> ('name', ((1, 2), (2,))); a bare name: None.

    Anything else (pins, exclusions, other operators) is refused: both files use these forms only.
    """
    match = SPEC.match(spec.strip().strip("'\""))
    if not match:
        raise ValueError(f"{spec!r}: write 'name', 'name>=X.Y' or 'name>=X.Y,<Z.W'")
    name, lower, upper = match.groups()
    bounds = (_version(lower), _version(upper))
    return normalise(name), None if bounds == (None, None) else bounds


def read_environment(text: str) -> tuple[list[str], list[str]]:
    """The conda and pip dependency lists of an environment.yml (the subset of YAML it uses)."""
    conda, pip = [], []
    in_deps, pip_indent = False, None
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not line:
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            in_deps, pip_indent = line == "dependencies:", None
            continue
        item = line.strip()
        if not in_deps or not item.startswith("- "):
            continue
        value = item[2:].strip()
        if pip_indent is not None and indent > pip_indent:
            pip.append(value)
        elif value == "pip:":
            pip_indent = indent
        else:
            pip_indent = None
            conda.append(value)
    return conda, pip


def conda_requirements(text: str) -> dict[str, tuple[int, ...] | None]:
    """environment.yml's conda packages under their PyPI names, python and pip left out."""
    found = {}
    for spec in read_environment(text)[0]:
        name, bound = parse_spec(spec)
        if name not in CONDA_ONLY:
            found[CONDA_TO_PIP.get(name, name)] = bound
    return found


def pip_requirements(pyproject: dict) -> dict[str, tuple[int, ...] | None]:
    """pyproject.toml's dependencies plus every optional extra."""
    project = pyproject["project"]
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return dict(parse_spec(spec) for spec in specs)


def disagreements(pip: dict, conda: dict) -> list[str]:
    """One line per package that the two files do not list alike; empty when they agree."""
    problems = []
    for name in sorted(pip.keys() | conda.keys()):
        if name not in conda:
            problems.append(f"{name}: in pyproject.toml but not in environment.yml")
        elif name not in pip:
            problems.append(f"{name}: in environment.yml but not in pyproject.toml")
        elif pip[name] != conda[name]:
            problems.append(f"{name}: bounds {_show(pip[name])} in pyproject.toml "
                            f"but {_show(conda[name])} in environment.yml")
    return problems


def _show(bounds) -> str:
    if bounds is None:
        return "none"
    lower, upper = bounds
    text = [f"{op}{'.'.join(map(str, v))}" for op, v in ((">=", lower), ("<", upper)) if v]
    return ",".join(text)


@pytest.fixture(scope="module")
def files():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    environment = (ROOT / "environment.yml").read_text()
    return pyproject, environment


def test_same_packages_and_bounds(files):
    pyproject, environment = files
    problems = disagreements(pip_requirements(pyproject), conda_requirements(environment))
    assert not problems, "pyproject.toml and environment.yml disagree:\n  " + "\n  ".join(problems)


def test_same_python_and_labkit_installed(files):
    pyproject, environment = files
    conda, pip = read_environment(environment)
    python = dict(parse_spec(spec) for spec in conda).get("python")
    assert python == parse_spec("python" + pyproject["project"]["requires-python"])[1], (
        "python lower bound differs between environment.yml and requires-python")
    assert "-e ." in pip, "environment.yml's pip section must install labkit itself: '- -e .'"


def test_comparison_catches_a_package_in_one_file_only_and_any_differing_bound():
    pip = {"jupyterlab": ((4, 6), None), "tqdm": ((4, 70), None)}
    assert disagreements(pip, {"jupyterlab": parse_spec("jupyterlab>=4.6.0")[1], "tqdm": ((4, 70), None)}) == []
    assert disagreements(pip, {"jupyterlab": ((4, 6), None)}) == ["tqdm: in pyproject.toml but not in environment.yml"]
    assert disagreements({"tqdm": ((4, 70), None)}, {"tqdm": ((4, 70), None), "numpy": ((2,), None)}) == [
        "numpy: in environment.yml but not in pyproject.toml"]
    assert disagreements({"tqdm": ((4, 70), None)}, {"tqdm": ((4, 60), None)}) == [
        "tqdm: bounds >=4.70 in pyproject.toml but >=4.60 in environment.yml"]
    assert disagreements({"tqdm": ((4, 70), None)}, {"tqdm": None})[0].endswith("but none in environment.yml")
    capped = {"matplotlib": parse_spec("matplotlib>=3.10,<3.11")[1]}
    assert disagreements(capped, {"matplotlib": ((3, 10), None)}) == [
        "matplotlib: bounds >=3.10,<3.11 in pyproject.toml but >=3.10 in environment.yml"]


def test_reader_maps_conda_names_and_refuses_pins():
    text = "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - python>=3.10\n  - redis-py >=8.1\n" \
           "  - Sqlite_Utils  # comment\n  - pip:\n      - -e .\n  - tqdm\n  - matplotlib>=3.10,<3.11  # why\n"
    assert conda_requirements(text) == {"redis": ((8, 1), None), "sqlite-utils": None, "tqdm": None,
                                        "matplotlib": ((3, 10), (3, 11))}
    assert read_environment(text)[1] == ["-e ."]
    for spec in ("numpy==2.0", "numpy!=2.0", "numpy<2"):
        with pytest.raises(ValueError, match="write 'name', 'name>=X.Y' or 'name>=X.Y,<Z.W'"):
            parse_spec(spec)


def test_reader_agrees_with_yaml(files):
    yaml = pytest.importorskip("yaml")  # present through jupyter_server, not a dependency of ours
    deps = yaml.safe_load(files[1])["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = [item for d in deps if isinstance(d, dict) for item in d["pip"]]
    assert read_environment(files[1]) == (conda, pip)
