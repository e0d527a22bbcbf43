"""The synthetic log's vocabulary and fixed knobs: categories, titles' words, countries, return factors.

Private to `ecomine.datasets.synthetic`; the public names are re-exported there.
"""

from __future__ import annotations

import numpy as np

# Vocabulary: category -> (title nouns, category adjectives, log-price offset, risky)
_CATEGORIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], float, bool], ...] = (
    ("candles", ("CANDLE HOLDER", "TEALIGHT HOLDER", "SCENTED CANDLE", "LANTERN", "CANDLE POT"),
     ("SCENTED", "GLASS", "MOROCCAN", "ZINC", "FROSTED"), 0.0, False),
    ("lights", ("STRING LIGHTS", "NIGHT LIGHT", "FAIRY LIGHTS", "LED GLOBE", "TABLE LAMP"),
     ("BATTERY", "GLOW", "LED", "WIRELESS", "BRIGHT"), 0.5, True),
    ("kitchen", ("MUG", "TEA TOWEL", "CAKE STAND", "APRON", "JAM JAR"),
     ("ENAMEL", "CERAMIC", "BONE CHINA", "GINGHAM", "TIN"), 0.1, False),
    ("bags", ("JUMBO BAG", "SHOPPER", "LUNCH BAG", "TOTE BAG", "CHARLOTTE BAG"),
     ("JUMBO", "RECYCLED", "WOVEN", "CANVAS", "STRAW"), 0.0, False),
    ("decorations", ("HANGING HEART", "BAUBLE", "WREATH", "BUNTING", "GARLAND"),
     ("FELT", "GLITTER", "WICKER", "PAPER", "FESTIVE"), -0.3, False),
    ("cards", ("GREETING CARD", "WRAPPING PAPER", "GIFT TAG", "NOTEBOOK", "ENVELOPES"),
     ("PACK OF 12", "EMBOSSED", "FOLDED", "PRINTED", "KRAFT"), -0.8, False),
    ("jewellery", ("NECKLACE", "BRACELET", "EARRINGS", "TRINKET BOX", "HAIR CLIP"),
     ("DIAMANTE", "BEADED", "SILVER", "CRYSTAL", "PEARL"), 0.6, True),
    ("clocks", ("ALARM CLOCK", "WALL CLOCK", "KITCHEN CLOCK", "DOORSTOP", "WALL MIRROR"),
     ("BAKELIKE", "ANTIQUE", "CHROME", "WOODEN", "IRON"), 0.9, False),
    ("toys", ("SKITTLES", "JIGSAW", "SPINNING TOP", "DOLLY", "PLAYHOUSE"),
     ("WOODEN", "MINI", "TOY", "CHILDRENS", "SPACEBOY"), -0.2, False),
    ("garden", ("WATERING CAN", "PLANTER", "BIRD FEEDER", "GARDEN SIGN", "SEED TRAY"),
     ("GALVANISED", "TERRACOTTA", "RUSTIC", "OUTDOOR", "HANGING"), 0.3, False),
    ("furniture", ("SIDE TABLE", "CABINET", "WALL SHELF", "STOOL", "COAT RACK"),
     ("PAINTED", "FOLDING", "DRAWER", "SHABBY", "FRENCH"), 1.6, True),
    ("baking", ("CAKE CASES", "BAKING SET", "COOKIE CUTTER", "BISCUIT TIN", "PARTY CUPS"),
     ("SET OF 60", "PARTY", "PASTEL", "FAIRY CAKE", "NOVELTY"), -0.4, False),
    ("textiles", ("CUSHION COVER", "THROW", "DOORMAT", "HOT WATER BOTTLE", "QUILT"),
     ("KNITTED", "PATCHWORK", "VELVET", "CHENILLE", "FLEECE"), 0.7, False),
    ("stationery", ("PENCIL CASE", "STICKER SHEET", "ERASER", "RULER", "MEMO BOARD"),
     ("SCHOOL", "RETRO", "MAGNETIC", "SCENTED", "TINY"), -0.6, False),
)
_GENERIC_NOUNS = ("GIFT SET", "ORNAMENT", "KEEPSAKE", "TRINKET", "DISPLAY")
_GENERAL_ADJECTIVES = ("VINTAGE", "SET OF 3", "SMALL", "LARGE", "RETRO", "REGENCY", "HOME SWEET HOME")
_COLOURS = ("RED", "PINK", "BLUE", "WHITE", "IVORY", "GREEN", "CREAM", "BLACK", "GOLD", "PASTEL")
_MOTIFS = ("HEART", "STAR", "SPOTTY", "BIRD", "ROSE", "DOILY", "SKULL", "POLKADOT", "FLORAL", "BUTTERFLY")

CATEGORY_NAMES: tuple[str, ...] = tuple(c[0] for c in _CATEGORIES)
RISKY_CATEGORIES: tuple[str, ...] = tuple(c[0] for c in _CATEGORIES if c[4])

# Country -> share of users. One country carries a higher return rate.
_COUNTRIES: tuple[tuple[str, float], ...] = (
    ("United Kingdom", 0.82), ("Germany", 0.05), ("France", 0.05), ("EIRE", 0.03),
    ("Netherlands", 0.02), ("Spain", 0.02), ("Belgium", 0.01),
)
RISKY_COUNTRY = "France"

# Log-odds added to a purchase line's return probability for each planted factor.
# The intercept is solved so that the mean probability equals `return_rate`;
# each user also carries a hidden N(0, 0.5) log-odds effect.
RETURN_FACTORS: dict[str, float] = {
    "high_price": 1.0,  # item base price in the top 20 % of the catalogue
    "bulk": 1.2,  # line quantity 4-8x the user's usual for that item
    "risky_category": 1.0,  # category in RISKY_CATEGORIES
    "new_user": 0.8,  # the user's first or second order
    "risky_country": 1.0,  # user's country is RISKY_COUNTRY
}

_WEEKLY = np.array([1.10, 1.15, 1.10, 1.15, 0.90, 0.45, 0.65])  # Mon..Sun order multipliers
_PEAK_DOY, _PEAK_WIDTH, _PEAK_HEIGHT = 340, 16.0, 1.3  # December peak (~Dec 6)
_HOURS = np.arange(7, 20)
_HOUR_P = np.exp(-0.5 * ((_HOURS - 12.5) / 2.8) ** 2)
_BULK_P, _BULK_LOW, _BULK_HIGH = 0.04, 4, 8  # bulk multiplier uniform on 4..8
_US_PER_DAY = 86_400_000_000
_ZIPF = 0.8  # popularity exponent over collections within a category
_ALPHA_BG = 0.2  # Dirichlet concentration on categories outside a user's favourites
_ACT_SIGMA = 0.6  # log-sd of users' order rates (heavy tail)
_CORE_SHARE = 0.5  # share of collections on sale all the time (others: a launch..end window)


def _ids(prefix: str, n: int, width: int = 6) -> np.ndarray:
    width = max(width, len(str(n)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)
