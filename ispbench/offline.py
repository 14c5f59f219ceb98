"""Make ultralytics work with no network: the project's machines reach only package registries.

ultralytics otherwise (1) syncs settings and events to its servers, (2) downloads
``Arial.ttf`` from GitHub the first time it draws a label, and (3) downloads weights named
like ``yolov8n.pt``. :func:`configure_ultralytics` turns (1) and (2) off before ultralytics is
imported; ispbench never passes a bare weights name, so (3) cannot happen. Call it (or import
:mod:`ispbench.tasks.detector`, which does) before ``import ultralytics``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ispbench.paths import cache_dir

_configured = False


def _font_file() -> Path:
    """A TrueType font that ships with matplotlib (DejaVu Sans), used in place of Arial."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not path.exists():
        raise FileNotFoundError(f"matplotlib's DejaVuSans.ttf not found at {path}; reinstall matplotlib")
    return path


def configure_ultralytics() -> Path:
    """Point ultralytics at a local config folder with sync off, a local font and safe loading. Idempotent.

    Call it before the first ``import ultralytics``: ultralytics reads ``ULTRALYTICS_SAFE_LOAD`` at import.

    Returns:
        The ultralytics config folder (``$YOLO_CONFIG_DIR``).
    """
    global _configured
    config = Path(os.environ.get("YOLO_CONFIG_DIR", cache_dir() / "ultralytics"))
    config.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(config)
    os.environ["YOLO_OFFLINE"] = "1"
    # every ultralytics checkpoint load (training, validation, YOLO(path)) with weights_only=True plus its
    # allow-list of layer classes, so a crafted weights file cannot run code
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    font = config / "Arial.ttf"
    if not font.exists():
        shutil.copyfile(_font_file(), font)
    # Settings file written before import, so the first import already sees sync off.
    settings = config / "settings.json"
    if not settings.exists():
        settings.write_text('{"sync": false}\n')
    if not _configured:
        try:
            from ultralytics.utils import SETTINGS

            SETTINGS.update({"sync": False})
        except Exception:  # noqa: BLE001 - ultralytics absent or API changed: env vars still apply
            pass
        _configured = True
    return config
