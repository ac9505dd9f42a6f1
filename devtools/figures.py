"""`make figures`: every rendered block of the pages, from the files the runs wrote: the model
tables from the recipe records (records_table.py), the performance and reliability blocks
from the benchmarks' files (bench_figures.py), the long targets' costs (costs_table.py), the
commands' help and the Make targets (reference.py).

    python -m devtools.figures          # from the project folder
"""

from __future__ import annotations

from devtools import bench_figures, costs_table, records_table, reference


def main() -> None:
    for page in records_table.write_pages():
        print(f"figures: {page} (model)")
    for page in bench_figures.write_pages():
        print(f"figures: {page} (performance)")
    for page in costs_table.write_pages():
        print(f"figures: {page} (costs)")
    for page in reference.write_pages():
        print(f"figures: {page} (commands and targets)")


if __name__ == "__main__":
    main()
