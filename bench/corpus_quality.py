"""What the parser loses on the corpora, per corpus: the table of tests/test_corpus_quality.py.

Usage (from the repository root, after ``pip install -e '.[test]'`` into ``.venv``):

    .venv/bin/python bench/corpus_quality.py [--tree PATH] [--list COLUMN] [--json]

The counts and the messages they are taken over are defined in
``tests/corpus_quality.py``. ``--tree PATH`` also counts for another checkout
(e.g. ``git worktree add /tmp/ingestd-before 6282535``, the code before issue
16) and prints every count as ``tree → this``: a child process imports
``ingestd`` from there and the counting code from this checkout, by path.
``--list COLUMN`` prints the messages counted in one column (this checkout;
a column is a field name of ``Quality``, e.g. ``empty_body``). Not part of
the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchlib import (
    REPO,
    corpus_messages,
    ingestd_package,
    ingestd_revision,
    is_checkout,
    load_file,
    quiet_mail_parser,
    run_child,
)

quality = load_file("bench_corpus_quality", REPO / "tests" / "corpus_quality.py")


def counted() -> dict[str, dict[str, int]]:
    """The table, as JSON, for the ``ingestd`` this process imports."""
    _, messages, _ = corpus_messages()
    result: dict[str, dict[str, int]] = quality.to_json(quality.count(messages))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path,
                        help="also count for this checkout (e.g. a worktree of the code before)")
    parser.add_argument("--list", metavar="COLUMN", choices=list(quality.COLUMNS),
                        help="print the messages counted in COLUMN")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_mail_parser()
    if args.child:
        print(json.dumps(counted()))
        return 0
    if args.list:
        root, messages, _ = corpus_messages()
        for origin in quality.messages_with(messages, args.list):
            print(Path(origin).relative_to(root))
        return 0
    if args.tree is not None:
        args.tree = args.tree.resolve()
        if not is_checkout(args.tree):
            parser.error(f"{args.tree} is not an ingestd checkout")
    this = counted()
    before = run_child(__file__, args.tree, []) if args.tree is not None else None
    if args.json:
        print(json.dumps({"this": this} | ({"tree": before} if before else {}), indent=2))
        return 0
    print(f"this: ingestd {ingestd_revision(ingestd_package())} ({ingestd_package()})")
    if before is None:
        print(quality.format_table(quality.from_json(this)))
    else:
        print(f"tree: ingestd {ingestd_revision(ingestd_package(args.tree))} ({args.tree})")
        print("every count: tree → this")
        print(quality.format_side_by_side(quality.from_json(before), quality.from_json(this)))
    print(quality.LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
