"""Render: text, JSON, Markdown, SVG, Mermaid and HTML of the records, through one registry."""
