"""The machinery of the executable chapters: claims and their verdicts (``claims``), running a
chapter with other parameters (``runner``), and the book's figure style (``plotting``)."""
