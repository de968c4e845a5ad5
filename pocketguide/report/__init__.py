"""The HTML run report (`pocketguide report`): collect (store → data), browse (the browser's records),
tally (teacher figures), html (one self-contained page from assets/)."""
