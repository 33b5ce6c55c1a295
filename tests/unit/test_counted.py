"""CLI messages count with their noun (vfr.common.counted)."""
from vfr.common import counted


def test_one_is_singular_and_other_counts_are_plural():
    assert counted(1, "image") == "1 image"
    assert counted(0, "image") == "0 images"
    assert counted(3, "description") == "3 descriptions"


def test_a_consonant_before_y_makes_ies_and_a_vowel_before_y_does_not():
    assert counted(2, "query") == "2 queries"
    assert counted(1, "query") == "1 query"
    assert counted(2, "key") == "2 keys"
