"""The package's shape: the engine stays free of the notebook stack, ``import layerkit`` stays light."""

import subprocess
import sys

ENGINE_MODULES = [
    "layerkit.engine.store", "layerkit.engine.union", "layerkit.engine.container", "layerkit.engine.commit",
    "layerkit.engine.runtime", "layerkit.engine.extract", "layerkit.engine.rootfs", "layerkit.formats.load",
    "layerkit.formats.oci", "layerkit.formats.docker_archive",
    "layerkit.commands", "layerkit.cli",
]
HEAVY = ["pandas", "matplotlib", "ipywidgets", "IPython", "numpy"]


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return set(out)


def test_engine_does_not_import_notebook_stack():
    mods = _loaded_after("\n".join(f"import {m}" for m in ENGINE_MODULES))
    assert not [h for h in HEAVY if h in mods], [h for h in HEAVY if h in mods]


def test_import_layerkit_is_light():
    mods = _loaded_after("import layerkit")
    assert "layerkit.engine.store" not in mods
    assert not [h for h in HEAVY if h in mods]


def test_cli_help_and_usage_errors(capsys):
    from layerkit.cli import main

    assert main(["--help"]) == 0
    assert "history" in capsys.readouterr().out
    assert main(["history"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "image" in err


def test_ref_json(capsys):
    import json

    from layerkit.cli import main

    assert main(["ref", "registry.example.com:5000/team/app:1.2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {"domain": "registry.example.com:5000", "path": "team/app", "namespace": "team", "name": "app",
                    "tag": "1.2", "digest": None, "familiar": "registry.example.com:5000/team/app:1.2",
                    "normalized": "registry.example.com:5000/team/app:1.2"}
    assert main(["ref", "Busybox"]) == 1
    assert "must be lowercase" in capsys.readouterr().err
