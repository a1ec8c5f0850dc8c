"""Binder readiness: the files Binder (repo2docker) reads define an environment that runs every chapter.

Fast checks: ``runtime.txt`` names the Python version, ``requirements.txt`` pins every package
(including jupytext, so the .md chapters open as notebooks), ``postBuild`` exists and is executable,
and the launch buttons of the built pages come from the one ``repository:`` setting of _config.yml.
``postBuild`` makes JupyterLab open the .md chapters as notebooks (jupytext's viewer as the default
for Markdown): checked by running postBuild with pip stubbed out and reading the settings back the
way JupyterLab does.

The slow check (``make binder-check``; CI runs it after ``make test``) is the closest offline
stand-in for what Binder does: a fresh virtual environment
made only from those files (``python -m venv``, ``pip install -r requirements.txt``, then
``postBuild``), whose ``pip freeze`` must equal requirements.txt, whose JupyterLab settings open
.md files as notebooks, and in which every notebook page of _toc.yml is executed with jupytext +
nbclient (no cell error, no Python warning in an output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from bookbuild import ROOT, is_notebook, source_file, toc_pages

# The fresh-environment check pip-installs the whole pinned environment and runs every chapter a
# third time (after the book and the student builds): 3 to 15 minutes depending on the machine's
# load, too much for every `make test`. `make binder-check` runs it (and CI, after `make test`).
FRESH_ENV_CHECK = pytest.mark.skipif(
    os.environ.get("BILEVEL_BINDER_CHECK") != "1",
    reason="the fresh-environment Binder check runs in `make binder-check` (CI runs it after `make test`)",
)

REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")
PIP_TIMEOUT_S = 1200
EXECUTE_TIMEOUT_S = 3600


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = REQUIREMENT.match(line)
        assert match, f"requirements.txt: {line!r} is not pinned as name==version"
        pins[_canonical(match["name"])] = match["version"]
    return pins


def _runtime_version() -> str:
    text = (ROOT / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", text)
    assert match, f"runtime.txt should read python-X.Y; it reads {text!r}"
    return match[1]


# --- fast checks ---------------------------------------------------------------------------


def test_binder_files_exist():
    for name in ("requirements.txt", "runtime.txt", "postBuild"):
        assert (ROOT / name).is_file(), f"{name} is missing: Binder reads it"
    assert os.access(ROOT / "postBuild", os.X_OK), "postBuild must be executable (chmod +x postBuild)"
    assert _runtime_version() == "3.11", "the book is developed and tested on Python 3.11"


def test_requirements_pin_everything_binder_needs():
    pins = _requirements()
    for needed in ("jupytext", "ipykernel", "ipywidgets", "numpy", "jupyter-book"):
        assert needed in pins, f"requirements.txt does not pin {needed}"


def test_postbuild_installs_the_library():
    text = (ROOT / "postBuild").read_text(encoding="utf-8")
    assert re.search(r"pip install\b.*-e \.", text), "postBuild should install bilevel_lib (pip install -e .)"


JUPYTEXT_VIEWER = "Jupytext Notebook"  # the document widget factory of jupytext's JupyterLab extension
OPENS_AS_NOTEBOOK = ("markdown", "myst")  # JupyterLab's file types for .md and .myst

# Reads the JupyterLab setting overrides exactly as jupyterlab_server does when the Lab page is
# served (overrides.json of the app settings dir, then labconfig/default_setting_overrides.json of
# every Jupyter config dir) and prints the default viewers.
READ_DEFAULT_VIEWERS = r"""
import json, sys
from jupyterlab_server.settings_utils import _get_overrides
overrides, error = _get_overrides(sys.argv[1])
assert not error, error
print(json.dumps(overrides.get("@jupyterlab/docmanager-extension:plugin", {}).get("defaultViewers", {})))
"""


def _default_viewers(python, env, app_settings_dir: Path) -> dict:
    proc = subprocess.run(
        [str(python), "-c", READ_DEFAULT_VIEWERS, str(app_settings_dir)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, f"reading the JupyterLab settings failed:\n{proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def _assert_md_opens_as_notebook(viewers: dict, where: str):
    wrong = {kind: viewers.get(kind) for kind in OPENS_AS_NOTEBOOK if viewers.get(kind) != JUPYTEXT_VIEWER}
    assert not wrong, (
        f"{where}: JupyterLab's default viewer should be {JUPYTEXT_VIEWER!r} for {OPENS_AS_NOTEBOOK}, "
        f"so that the launch buttons open the .md chapters as notebooks; it is {wrong} "
        "(postBuild should run `jupytext-config set-default-viewer markdown myst`)"
    )


def test_jupytext_brings_the_notebook_viewer_for_md():
    """The pinned jupytext installs its JupyterLab extension (which defines the viewer postBuild
    names) and enables its server extension (which reads .md files as notebooks)."""
    labextension = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyterlab-jupytext"
    assert (labextension / "package.json").is_file(), (
        f"jupytext's JupyterLab extension is not installed: {labextension}"
    )
    assert any(
        JUPYTEXT_VIEWER in path.read_text(encoding="utf-8", errors="replace")
        for path in (labextension / "static").glob("*.js")
    ), f"jupytext's JupyterLab extension defines no {JUPYTEXT_VIEWER!r} viewer: postBuild's setting would be ignored"
    server = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "jupytext.json"
    assert server.is_file(), f"jupytext's server extension is not enabled: no {server}"
    assert json.loads(server.read_text(encoding="utf-8"))["ServerApp"]["jpserver_extensions"].get(
        "jupyterlab_jupytext"
    ), f"{server} does not enable jupyterlab_jupytext"


def test_postbuild_makes_jupyterlab_open_md_chapters_as_notebooks(tmp_path):
    """Run the real postBuild with `python -m pip` stubbed out (so this environment is left alone)
    and a Jupyter config dir of its own, then read the settings back as JupyterLab does."""
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    pip_log = tmp_path / "pip-calls.txt"
    shim = shim_dir / "python"
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$*" >> "{pip_log}"; exit 0; fi\n'
        f'exec "{sys.executable}" "$@"\n',
        encoding="utf-8",
    )
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "PATH": os.pathsep.join([str(shim_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
    }
    post = subprocess.run(
        ["bash", str(ROOT / "postBuild")], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120
    )
    assert post.returncode == 0, f"postBuild failed:\n{post.stdout[-3000:]}\n{post.stderr[-3000:]}"
    assert pip_log.is_file() and "-e ." in pip_log.read_text(), "postBuild did not call `python -m pip install -e .`"
    written = tmp_path / "jupyter-config" / "labconfig" / "default_setting_overrides.json"
    assert written.is_file(), f"postBuild wrote no JupyterLab setting overrides to the Jupyter config dir ({written})"
    _assert_md_opens_as_notebook(_default_viewers(sys.executable, env, tmp_path / "app-settings"), "postBuild")
    # it sets only the Markdown types: .py files of the library still open in the editor
    viewers = json.loads(written.read_text(encoding="utf-8"))["@jupyterlab/docmanager-extension:plugin"][
        "defaultViewers"
    ]
    assert "python" not in viewers, "postBuild should not make .py files (the library) open as notebooks"


def test_the_viewer_check_fails_without_the_setting(tmp_path):
    """The check above can fail: an empty Jupyter config dir gives no default viewer for .md."""
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "empty")}
    viewers = _default_viewers(sys.executable, env, tmp_path / "app-settings")
    with pytest.raises(AssertionError, match="default viewer"):
        _assert_md_opens_as_notebook(viewers, "empty config")


@pytest.mark.slow
def test_launch_buttons_come_from_the_repository_setting(book):
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"].rstrip("/")
    branch = config["repository"].get("branch", "main")
    binderhub = config["launch_buttons"]["binderhub_url"].rstrip("/")
    owner_repo = re.sub(r"^https://github\.com/", "", url)
    notebooks = [doc for doc in toc_pages() if is_notebook(source_file(doc))]
    assert notebooks, "no notebook pages in _toc.yml"
    for docname in notebooks:
        page = book.page(docname)
        expected = f"{binderhub}/v2/gh/{owner_repo}/{branch}?urlpath="
        assert expected in page, f"{docname}: no Binder launch button to {expected}..."
        assert source_file(docname).relative_to(ROOT).as_posix() in page.split(expected, 1)[1][:200], (
            f"{docname}: the launch button does not open this chapter"
        )


# --- the fresh environment -----------------------------------------------------------------

RUNNER = r"""
import json, sys, time, warnings
from pathlib import Path
import jupytext
from nbclient import NotebookClient

for name in sys.argv[1:]:
    path = Path(name)
    nb = jupytext.read(path)
    start = time.perf_counter()
    error = None
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as err:  # report, go on with the next chapter
        error = f"{type(err).__name__}: {str(err)[-2000:]}"
    warned = [out.get("text", "")[:300] for cell in nb.cells for out in cell.get("outputs", [])
              if out.get("name") == "stderr" and "Warning:" in out.get("text", "")]
    print(json.dumps({"path": name, "seconds": time.perf_counter() - start, "error": error,
                      "warnings": warned}), flush=True)
"""


def _python_for_runtime() -> str:
    """An interpreter of runtime.txt's version: this one, or pythonX.Y on the PATH."""
    version = _runtime_version()
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if not found:
        pytest.skip(f"runtime.txt asks for Python {version}, which is not installed here")
    return found


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    """A virtual environment built only from runtime.txt, requirements.txt and postBuild."""
    work = tmp_path_factory.mktemp("binder")
    venv = work / "venv"
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    # Binder sets no PYTHONPATH: without this, a caller's PYTHONPATH (e.g. a worktree) would make
    # bilevel_lib importable even if postBuild failed to install it
    env.pop("PYTHONPATH", None)
    base = _python_for_runtime()
    # the base interpreter of this venv, not the venv itself, so nothing of .venv leaks in
    base = subprocess.run(
        [base, "-c", "import sys; print(sys._base_executable)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    timings = {}
    start = time.perf_counter()
    subprocess.run([base, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements.txt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=PIP_TIMEOUT_S,
    )
    assert pip.returncode == 0, f"pip install -r requirements.txt failed:\n{pip.stdout[-3000:]}\n{pip.stderr[-3000:]}"
    timings["pip install -r requirements.txt"] = time.perf_counter() - start
    # postBuild as Binder runs it: from the repository, with the environment's python first on PATH
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    env["JUPYTER_DATA_DIR"] = str(work / "jupyter-data")  # no kernels from the user's home
    env["JUPYTER_CONFIG_DIR"] = str(work / "jupyter-config")
    env["JUPYTER_PREFER_ENV_PATH"] = "1"
    start = time.perf_counter()
    post = subprocess.run(
        ["bash", str(ROOT / "postBuild")], cwd=ROOT, capture_output=True, text=True, env=env, timeout=PIP_TIMEOUT_S
    )
    assert post.returncode == 0, f"postBuild failed:\n{post.stdout[-3000:]}\n{post.stderr[-3000:]}"
    timings["postBuild"] = time.perf_counter() - start
    return python, env, timings


@pytest.mark.slow
@FRESH_ENV_CHECK
def test_fresh_environment_is_exactly_the_pinned_one(fresh_env):
    python, env, _ = fresh_env
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    installed = {}
    for line in freeze:
        match = REQUIREMENT.match(line.strip())
        if match:
            installed[_canonical(match["name"])] = match["version"]
    pins = _requirements()
    unpinned = sorted(
        f"{name}=={version}"
        for name, version in installed.items()
        if name not in pins and name not in {"pip", "bilevel-lib"}
    )
    assert not unpinned, f"installed but not pinned in requirements.txt (keep it a full freeze): {unpinned}"
    different = sorted(
        f"{name}: pinned {pins[name]}, installed {version}"
        for name, version in installed.items()
        if name in pins and pins[name] != version
    )
    assert not different, f"pip installed other versions than requirements.txt pins: {different}"
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, env=env)
    assert check.returncode == 0, f"pip check: {check.stdout}{check.stderr}"
    where = subprocess.run(
        [str(python), "-c", "import bilevel_lib; print(bilevel_lib.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    assert Path(where).resolve().is_relative_to(ROOT), f"postBuild did not install this repo's library: {where}"


@pytest.mark.slow
@FRESH_ENV_CHECK
def test_fresh_environment_opens_md_chapters_as_notebooks(fresh_env, tmp_path):
    python, env, _ = fresh_env
    _assert_md_opens_as_notebook(
        _default_viewers(python, env, tmp_path / "app-settings"), "the fresh environment after postBuild"
    )
    venv = Path(python).parent.parent
    assert (venv / "share" / "jupyter" / "labextensions" / "jupyterlab-jupytext" / "package.json").is_file(), (
        "the fresh environment has no jupytext JupyterLab extension"
    )
    assert (venv / "etc" / "jupyter" / "jupyter_server_config.d" / "jupytext.json").is_file(), (
        "the fresh environment does not enable jupytext's server extension"
    )


@pytest.mark.slow
@FRESH_ENV_CHECK
def test_every_chapter_runs_in_the_fresh_environment(fresh_env):
    python, env, timings = fresh_env
    paths = [source_file(doc) for doc in toc_pages() if is_notebook(source_file(doc))]
    proc = subprocess.run(
        [str(python), "-c", RUNNER, *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=EXECUTE_TIMEOUT_S,
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(results) == len(paths), (
        f"the chapter runner failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )
    lines = [f"{name}: {seconds:.0f} s" for name, seconds in timings.items()]
    lines += [f"{Path(r['path']).relative_to(ROOT)}: {r['seconds']:.0f} s" for r in results]
    report = ROOT / "_build" / "binder-check.txt"
    report.parent.mkdir(exist_ok=True)
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    failed = [f"{Path(r['path']).relative_to(ROOT)}: {r['error']}" for r in results if r["error"]]
    assert not failed, "chapters that fail in the fresh environment:\n" + "\n\n".join(failed)
    warned = [f"{Path(r['path']).relative_to(ROOT)}: {r['warnings']}" for r in results if r["warnings"]]
    assert not warned, "chapters that print Python warnings in the fresh environment:\n" + "\n".join(warned)
