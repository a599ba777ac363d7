"""Document statistics over one file, the Python twin of guest/examples/doc_stats.rs.

Same definition as sandpool_guest::workloads::doc_stats_of: words are maximal
runs of alphanumeric characters, lowercased character by character; `top` is
the ten most frequent, by count descending then word ascending.
"""

import sandpool_task as sp


def doc_stats_of(text: str) -> dict:
    counts = {}
    words = 0
    word = []
    for c in text + " ":
        if c.isalnum():
            word.append(c.lower())
        elif word:
            w = "".join(word)
            counts[w] = counts.get(w, 0) + 1
            words += 1
            word = []
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {
        "bytes": len(text.encode("utf-8")),
        "lines": text.count("\n"),
        "words": words,
        "unique": len(counts),
        "top": [[w, n] for w, n in top],
    }


# Run once at build time (see sp.task): a small document with a few words.
WARM = sp.encode_file_input("warm.txt", "The quick brown fox, the lazy dog; 42 dogs.\n".encode() * 4)


@sp.task(decode=sp.file_input, encode=sp.json_value, warm=[WARM])
def doc_stats(file: sp.FileInput) -> dict:
    return doc_stats_of(file.text())


WitWorld = doc_stats.world
