"""Book-Crossing (Ziegler et al., 2004), the CSV dump ``BX-CSV-Dump.zip``.

Files (``--raw`` is the folder holding them): ``BX-Book-Ratings.csv`` (``"User-ID";"ISBN";"Book-Rating"``,
1,149,780 ratings, 0-10, where 0 is an *implicit* interaction) and ``BX-Books.csv`` (``"ISBN";"Book-Title";
"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"``, 271,379 books).
Both are ``;``-separated, every field double-quoted, in Windows-1252 (Latin-1 for the bytes cp1252 leaves
undefined), with HTML entities in titles (``&amp;``, unescaped with `html.unescape`) and MySQL-style backslash
escapes (``\\"``, ``\\'``: unescaped, so a title reads ``The "Secret" Garden``, not ``The \\"Secret\\" Garden``).
The paper's Table 2 (278,858 users, 271,379 items, 1,149,780 interactions) counts the three files before any
filter (users from BX-Users.csv).

Parsing. A line is split on the ``";"`` separators after removing its outer quotes, which tolerates stray quotes and
backslashes inside a field. A line that does not split into the expected number of fields (the dump has a few, e.g.
a title ending in ``\\"`` that swallows the author field), or whose User-ID/rating is not an integer, is *skipped
and counted* (``info["skipped_lines"]``, with the first line numbers in ``info["skipped_examples"]``), because the
published files are known to carry such rows. ISBNs are stripped and upper-cased on both sides; ratings of ISBNs
absent from BX-Books.csv (or whose book row was skipped) have no title and are dropped and counted
(``ratings_without_book``); a repeated ISBN in BX-Books.csv keeps its first row (``duplicate_isbns``).

Filters. Positive: ``rating > 7``, i.e. 8-10 (``positive_threshold=8``); implicit 0s are kept as non-positive
interactions (they count in "interactions" as in Table 2, never as positives). Users with at least 20 positives.

Order. The dump has no timestamps, yet temporal/exposure shifts sort each user's interactions chronologically. We
store the book's Year-Of-Publication as ``timestamp`` (a user cannot have read a book before it appeared, and it
gives the "latest" items an actual meaning) and break ties by file order (`make_dataset` sorts by (user, timestamp,
file row)). Years outside 1000-2004 (0 and the like mean unknown; the dump dates from 2004) become 0, i.e. are put
before every dated book of the user. Items get ids 1..n in BX-Books.csv order; titles are the book titles made
unique with `unique_titles` (editions of one title get " [2]", ...).
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from .datasets import unique_titles
from .prepared import RawData, RawSpec, register_raw

BACKSLASH_ESCAPE = re.compile(r"""\\(["'\\])""")
RATINGS = "BX-Book-Ratings.csv"
BOOKS = "BX-Books.csv"
MAX_YEAR = 2004
EXAMPLES = 10


def find_folder(raw: Path) -> Path:
    for folder in (raw, raw / "BX-CSV-Dump"):
        if (folder / RATINGS).is_file() and (folder / BOOKS).is_file():
            return folder
    raise FileNotFoundError(f"{raw}: no {RATINGS} and {BOOKS} (expected the extracted BX-CSV-Dump.zip)")


def decode(raw: bytes) -> str:
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def unescape(field: str) -> str:
    """A field's text: HTML entities (``&amp;``) and the dump's backslash escapes (``\\"``, ``\\'``, ``\\\\``)."""
    return BACKSLASH_ESCAPE.sub(r"\1", html.unescape(field))


def split_line(line: str) -> list[str] | None:
    line = line.rstrip("\r\n")
    if len(line) < 2 or not (line.startswith('"') and line.endswith('"')):
        return None
    return line[1:-1].split('";"')


class Skipped:
    def __init__(self, path: Path):
        self.path, self.count, self.examples = path, 0, []

    def add(self, n: int, why: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{self.path.name}:{n}: {why}")


def rows(path: Path, n_fields: int, skipped: Skipped):
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            fields = split_line(decode(raw))
            if n == 1 and fields and fields[0] in ("User-ID", "ISBN"):
                continue  # header
            if fields is None or len(fields) != n_fields:
                skipped.add(n, f"{0 if fields is None else len(fields)} fields, expected {n_fields}")
                continue
            yield n, fields


def read_books(path: Path, skipped: Skipped) -> tuple[dict[str, int], dict[int, str], dict[int, int], int]:
    ids: dict[str, int] = {}
    titles: dict[int, str] = {}
    years: dict[int, int] = {}
    duplicates = 0
    for n, fields in rows(path, 8, skipped):
        isbn = fields[0].strip().upper()
        if not isbn:
            skipped.add(n, "empty ISBN")
            continue
        if isbn in ids:
            duplicates += 1
            continue
        item = len(ids) + 1
        ids[isbn] = item
        titles[item] = " ".join(unescape(fields[1]).split()) or isbn
        year = fields[3].strip()
        years[item] = int(year) if year.isdigit() and 1000 <= int(year) <= MAX_YEAR else 0
    return ids, unique_titles(titles), years, duplicates


def read_ratings(path: Path, books: dict[str, int], years: dict[int, int],
                 skipped: Skipped) -> tuple[pd.DataFrame, int]:
    cols: dict[str, list] = {"user": [], "item": [], "rating": [], "timestamp": []}
    no_book = 0
    for n, (user, isbn, rating) in rows(path, 3, skipped):
        user, rating = user.strip(), rating.strip()
        if not (user.isdigit() and rating.isdigit() and 0 <= int(rating) <= 10):
            skipped.add(n, f"bad User-ID/rating {user!r}/{rating!r}")
            continue
        item = books.get(isbn.strip().upper())
        if item is None:
            no_book += 1
            continue
        cols["user"].append(int(user))
        cols["item"].append(item)
        cols["rating"].append(float(rating))
        cols["timestamp"].append(years[item])
    frame = pd.DataFrame(cols).astype({"user": "int64", "item": "int64", "rating": "float64", "timestamp": "int64"})
    return frame, no_book


def read_bookcrossing(raw: Path) -> RawData:
    folder = find_folder(raw)
    skip_books, skip_ratings = Skipped(folder / BOOKS), Skipped(folder / RATINGS)
    ids, titles, years, duplicates = read_books(folder / BOOKS, skip_books)
    frame, no_book = read_ratings(folder / RATINGS, ids, years, skip_ratings)
    return RawData(frame, titles, [folder / RATINGS, folder / BOOKS], {
        "source": f"Book-Crossing dump (BX-CSV-Dump.zip): {RATINGS}, {BOOKS}",
        "timestamp": f"Year-Of-Publication (unknown or outside 1000-{MAX_YEAR}: 0), ties in file order",
        "skipped_lines": {BOOKS: skip_books.count, RATINGS: skip_ratings.count},
        "skipped_examples": skip_books.examples + skip_ratings.examples,
        "ratings_without_book": no_book, "duplicate_isbns": duplicates,
        "implicit_ratings": int((frame["rating"] == 0).sum()),
    })


SPEC = register_raw(RawSpec(
    name="book-crossing", reader=read_bookcrossing, positive_threshold=8.0, min_user_positives=20,
    paper_rule="rating > 7, i.e. 8-10 (0 = implicit, never positive); users with >= 20 positives",
    expected="PATH/BX-CSV-Dump", paper_table2=(278_858, 271_379, 1_149_780), implicit_rating=0.0))
