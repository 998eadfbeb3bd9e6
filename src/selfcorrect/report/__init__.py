"""Reports: Markdown and self-contained HTML pages, CSV tables and figures, per benchmark and
for the whole study. `render` writes pages from blocks, `figures` holds the plotting helpers,
one module per benchmark holds its tables, sections and figures (`bbq`, `winogender`), `rounds`
the feedback-round sections, and `study` puts a results store together into report files."""
