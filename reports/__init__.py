"""Report renderers: JSON, Markdown and a self-contained HTML file, all from the JSON report."""

from .render import FORMATS, render

__all__ = ["FORMATS", "render"]
