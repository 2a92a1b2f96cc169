"""``Run``: a finished (or stopped) training run's folder, as a notebook shows it."""

import base64
import csv
import html
import json
from pathlib import Path


def _number(text):
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


class Run:
    """A run folder: ``dir``, ``config`` (config.json), ``history`` (history.csv's rows as dicts), ``best`` and
    ``last`` (checkpoint paths). In a notebook it shows its summary and curves."""

    def __init__(self, run_dir):
        self.dir = Path(run_dir)

    def __repr__(self):
        return f"Run({str(self.dir)!r})"

    @property
    def config(self):
        return json.loads((self.dir / "config.json").read_text())

    @property
    def history(self):
        path = self.dir / "history.csv"
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]

    @property
    def best(self):
        return self.dir / "best.safetensors"

    @property
    def last(self):
        return self.dir / "last.safetensors"

    def to_pandas(self):
        """The history as a pandas DataFrame (pandas must be installed)."""
        try:
            import pandas
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("Run.to_pandas() needs pandas: pip install pandas") from e
        return pandas.DataFrame(self.history)

    def _repr_html_(self):
        parts = [f"<p><b>catdog run</b> <code>{html.escape(str(self.dir))}</code></p>"]
        summary = self.dir / "summary.md"
        if summary.exists():
            parts.append(f"<pre>{html.escape(summary.read_text())}</pre>")
        curves = self.dir / "curves.png"
        if curves.exists():
            data = base64.b64encode(curves.read_bytes()).decode()
            parts.append(f'<img src="data:image/png;base64,{data}" alt="training curves"/>')
        return "\n".join(parts)
