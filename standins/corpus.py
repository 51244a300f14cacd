"""Deterministic companies, calendars and finance text for the REST stand-ins.

Everything here is a pure function of ``(seed, ticker, slot)``: the same article, post, tweet, filing or
transcript comes back byte-for-byte on every call, so re-fetches duplicate exactly and tests can assert on
content. Text is built from phrase banks with an explicit sentiment label ("positive" / "negative" /
"neutral") using plainly bullish or bearish finance wording, so a sentiment model has something to find.

The well-known tickers carry their real SEC CIK, conformed name, SIC code and fiscal year end (SPY and QQQ
are funds: no earnings, fund reports instead of 10-Ks); any other ticker gets a stable made-up identity.
Executives and analysts are invented names on purpose: the stand-in never puts words in real people's mouths.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import struct
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.timezone.utc

SENTIMENTS = ("positive", "negative", "neutral")


# -- deterministic randomness -------------------------------------------------------------------------------
def unit(seed: int, *parts: object) -> float:
    """A deterministic uniform number in [0, 1) from the seed and any parts."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return struct.unpack("<Q", digest)[0] / 2**64


def rng(seed: int, *parts: object) -> random.Random:
    """A ``random.Random`` seeded from the parts (stable across processes and Python versions)."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def pick_sentiment(r: random.Random) -> str:
    """Positive 35 %, negative 30 %, neutral 35 %."""
    x = r.random()
    return "positive" if x < 0.35 else "negative" if x < 0.65 else "neutral"


# -- companies ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Company:
    """Identity of one listed company as EDGAR and the news see it."""

    ticker: str
    cik: int
    name: str  # EDGAR conformed name, e.g. "Apple Inc." or "MICROSOFT CORP"
    short: str  # how the press writes it, e.g. "Apple"
    sic: str
    sic_description: str
    exchange: str  # "Nasdaq" or "NYSE"
    fiscal_year_end: str  # MMDD
    state: str
    products: tuple[str, ...]
    acceptance_clock: str  # "utc" or "et": how EDGAR's submissions JSON writes acceptanceDateTime (see rest_edgar)
    kind: str = "stock"  # or "etf": an exchange-traded fund (no earnings, files N-CSR reports, not 10-Ks)

    @property
    def cik10(self) -> str:
        return f"{self.cik:010d}"


# ticker: (cik, conformed name, short name, sic, sic description, exchange, fiscal year end, state, products)
_KNOWN: dict[str, tuple] = {
    "AAPL": (320193, "Apple Inc.", "Apple", "3571", "Electronic Computers", "Nasdaq", "0928", "CA",
             ("iPhone", "Mac", "iPad", "Services", "wearables")),
    "MSFT": (789019, "MICROSOFT CORP", "Microsoft", "7372", "Services-Prepackaged Software", "Nasdaq", "0630",
             "WA", ("Azure", "Microsoft 365", "Windows", "Xbox", "LinkedIn")),
    "AMZN": (1018724, "AMAZON COM INC", "Amazon", "5961", "Retail-Catalog & Mail-Order Houses", "Nasdaq",
             "1231", "DE", ("AWS", "Prime", "advertising", "online stores", "logistics")),
    "GOOGL": (1652044, "Alphabet Inc.", "Alphabet", "7370",
              "Services-Computer Programming, Data Processing, Etc.", "Nasdaq", "1231", "DE",
              ("Search", "YouTube", "Google Cloud", "Android", "Waymo")),
    "META": (1326801, "Meta Platforms, Inc.", "Meta", "7370",
             "Services-Computer Programming, Data Processing, Etc.", "Nasdaq", "1231", "DE",
             ("Facebook", "Instagram", "WhatsApp", "Reality Labs", "advertising")),
    "NVDA": (1045810, "NVIDIA CORP", "Nvidia", "3674", "Semiconductors & Related Devices", "Nasdaq", "0126",
             "DE", ("data center GPUs", "gaming GPUs", "CUDA software", "networking", "automotive chips")),
    "TSLA": (1318605, "Tesla, Inc.", "Tesla", "3711", "Motor Vehicles & Passenger Car Bodies", "Nasdaq",
             "1231", "TX", ("Model Y", "Model 3", "energy storage", "driver assistance", "Cybertruck")),
    "JPM": (19617, "JPMORGAN CHASE & CO", "JPMorgan", "6021", "National Commercial Banks", "NYSE", "1231",
            "DE", ("consumer banking", "investment banking", "asset management", "card services", "payments")),
    "XOM": (34088, "EXXON MOBIL CORP", "Exxon Mobil", "2911", "Petroleum Refining", "NYSE", "1231", "NJ",
            ("upstream production", "refining", "chemicals", "LNG", "low carbon solutions")),
    "JNJ": (200406, "JOHNSON & JOHNSON", "Johnson & Johnson", "2834", "Pharmaceutical Preparations", "NYSE",
            "1231", "NJ", ("oncology drugs", "immunology drugs", "medtech", "surgery devices", "vision care")),
    "V": (1403161, "VISA INC.", "Visa", "7389", "Services-Business Services, NEC", "NYSE", "0930", "DE",
          ("payments volume", "cross-border transactions", "processing", "value-added services", "tap to pay")),
    "WMT": (104169, "Walmart Inc.", "Walmart", "5331", "Retail-Variety Stores", "NYSE", "0131", "DE",
            ("U.S. stores", "Sam's Club", "e-commerce", "grocery", "advertising")),
    "IBM": (51143, "INTERNATIONAL BUSINESS MACHINES CORP", "IBM", "3570", "Computer & office Equipment",
            "NYSE", "1231", "NY", ("hybrid cloud", "consulting", "mainframes", "software", "AI platform")),
    "NFLX": (1065280, "NETFLIX INC", "Netflix", "7841", "Services-Video Tape Rental", "Nasdaq", "1231", "DE",
             ("streaming subscriptions", "ad-supported plan", "original series", "live events", "games")),
    "AMD": (2488, "ADVANCED MICRO DEVICES INC", "AMD", "3674", "Semiconductors & Related Devices", "Nasdaq",
            "1228", "DE", ("server processors", "AI accelerators", "PC processors", "graphics cards", "embedded")),
    "INTC": (50863, "INTEL CORP", "Intel", "3674", "Semiconductors & Related Devices", "Nasdaq", "1228", "DE",
             ("client computing", "data center", "foundry services", "Mobileye", "networking")),
    "KO": (21344, "COCA COLA CO", "Coca-Cola", "2080", "Beverages", "NYSE", "1231", "DE",
           ("sparkling drinks", "juice", "coffee", "water", "sports drinks")),
    "DIS": (1744489, "Walt Disney Co", "Disney", "4841", "Cable & Other Pay Television Services", "NYSE",
            "0928", "DE", ("theme parks", "Disney+", "ESPN", "studio films", "cruise line")),
}

# Exchange-traded funds: ticker -> (cik, conformed name, short name, exchange, fiscal year end, products)
_ETFS: dict[str, tuple] = {
    "SPY": (884394, "SPDR S&P 500 ETF TRUST", "SPDR S&P 500 ETF", "NYSE", "0930",
            ("large-cap stocks", "the S&P 500", "index options", "fund flows", "market breadth")),
    "QQQ": (1067839, "INVESCO QQQ TRUST, SERIES 1", "Invesco QQQ", "Nasdaq", "0930",
            ("Nasdaq-100 stocks", "megacap tech", "index options", "fund flows", "growth stocks")),
}

# The default universe: the well-known stocks plus SPY (the WebSocket stand-in streams SPY by default too).
DEFAULT_TICKERS: tuple[str, ...] = (*_KNOWN, "SPY")


@lru_cache(maxsize=4096)
def company(ticker: str) -> Company:
    """The company behind a ticker: real identity for the well-known ones, a stable invented one otherwise."""
    ticker = ticker.upper()
    known = _KNOWN.get(ticker)
    kind = "stock"
    if known:
        cik, name, short, sic, sic_desc, exchange, fye, state, products = known
    elif ticker in _ETFS:
        cik, name, short, exchange, fye, products = _ETFS[ticker]
        sic, sic_desc, state, kind = "", "", "MA", "etf"
    else:
        cik = 1_900_000 + int(90_000 * unit(0, "cik", ticker))
        short = ticker.title()
        name = f"{short} Holdings Inc."
        sic, sic_desc, exchange, fye, state = "7372", "Services-Prepackaged Software", "Nasdaq", "1231", "DE"
        products = ("software subscriptions", "cloud services", "hardware", "support contracts", "licensing")
    # About one filer in five has its acceptanceDateTime written on the New York clock with a "Z" appended
    # (the convention belongs to the filer); it depends on the CIK only, never on the seed.
    clock = "et" if unit(0, "acceptance-clock", cik) < 0.22 else "utc"
    return Company(ticker, cik, name, short, sic, sic_desc, exchange, fye, state, products, clock, kind)


# -- calendars ----------------------------------------------------------------------------------------------
def _add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    month += 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))


def next_weekday(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


@dataclass(frozen=True, slots=True)
class FiscalQuarter:
    fiscal_year: int
    quarter: int  # 1..4
    period_end: dt.date
    call_date: dt.date  # earnings release and call (after the close)


def fiscal_quarters(seed: int, co: Company, first_year: int, last_year: int) -> list[FiscalQuarter]:
    """Fiscal quarters whose fiscal year lies in [first_year, last_year], oldest first.

    A fiscal year is named by the calendar year in which it ends. The earnings call falls 3-5 weeks after
    the quarter ends, on a weekday.
    """
    mm, dd = int(co.fiscal_year_end[:2]), int(co.fiscal_year_end[2:])
    out = []
    for fy in range(first_year, last_year + 1):
        year_end = dt.date(fy, mm, min(dd, 28 if mm == 2 else dd))
        for q in range(1, 5):
            end = _add_months(year_end, 3 * (q - 4))
            lag = 22 + int(14 * unit(seed, "call-lag", co.ticker, fy, q))
            out.append(FiscalQuarter(fy, q, end, next_weekday(end + dt.timedelta(days=lag))))
    return out


@dataclass(frozen=True, slots=True)
class QuarterResults:
    revenue_musd: int
    prior_revenue_musd: int
    growth_pct: float
    net_income_musd: int
    eps: float
    gross_margin_pct: float
    sentiment: str  # how the quarter reads: growth and guidance


def quarter_results(seed: int, co: Company, fiscal_year: int, quarter: int) -> QuarterResults:
    """Deterministic headline numbers for one fiscal quarter (millions of USD)."""
    r = rng(seed, "results", co.ticker, fiscal_year, quarter)
    scale = 2_000 + int(60_000 * unit(seed, "scale", co.ticker))
    prior = int(scale * (0.8 + 0.4 * r.random()))
    growth = round(r.uniform(-12.0, 22.0), 1)
    revenue = int(prior * (1 + growth / 100))
    margin = round(r.uniform(18.0, 70.0), 1)
    net = int(revenue * r.uniform(0.04, 0.3) * (1 if growth > -8 else -0.4))
    shares_m = 500 + int(15_000 * unit(seed, "shares", co.ticker))
    eps = round(net / shares_m, 2)
    sentiment = "positive" if growth >= 6 else "negative" if growth <= -3 else "neutral"
    return QuarterResults(revenue, prior, growth, net, eps, margin, sentiment)


# -- people -------------------------------------------------------------------------------------------------
_FIRST = ("James", "Maria", "Wei", "Priya", "Daniel", "Sofia", "Kenji", "Olivia", "Ahmed", "Laura", "Marcus",
          "Elena", "Samuel", "Aisha", "Thomas", "Grace", "Lucas", "Hannah", "Rafael", "Nora", "Victor", "Chloe",
          "Andre", "Ingrid", "Felix", "Yara", "Oscar", "Mei", "Gabriel", "Ruth")
_LAST = ("Whitfield", "Okafor", "Lindqvist", "Moreno", "Castellanos", "Hartley", "Nakamura", "Brennan",
         "Adeyemi", "Kowalski", "Delacroix", "Fairbanks", "Sandoval", "Ishikawa", "Montgomery", "Petrov",
         "Ramasamy", "Caldwell", "Vasquez", "Thornton", "Achterberg", "Ferreira", "Gallagher", "Holloway",
         "Mbeki", "Lorenzo", "Stavros", "Kincaid", "Rosenthal", "Abernathy")
ANALYST_FIRMS = ("Morgan Stanley", "Goldman Sachs", "Bank of America", "Evercore ISI", "Bernstein", "Wedbush",
                 "Barclays", "UBS", "Citi", "Jefferies", "Piper Sandler", "Wells Fargo", "Deutsche Bank",
                 "Raymond James", "KeyBanc")


def person(seed: int, *parts: object) -> str:
    r = rng(seed, "person", *parts)
    return f"{r.choice(_FIRST)} {r.choice(_LAST)}"


@dataclass(frozen=True, slots=True)
class Executive:
    name: str
    title: str
    short_title: str


def executives(seed: int, co: Company) -> tuple[Executive, ...]:
    """The (invented) CEO, CFO and head of investor relations."""
    return (
        Executive(person(seed, co.ticker, "ceo"), "Chief Executive Officer", "CEO"),
        Executive(person(seed, co.ticker, "cfo"), "Chief Financial Officer", "CFO"),
        Executive(person(seed, co.ticker, "ir"), "Vice President, Investor Relations", "Head of IR"),
    )


# -- finance phrase banks -----------------------------------------------------------------------------------
HEADLINES = {
    "positive": (
        "{co} shares jump {pct}% after earnings beat estimates",
        "{co} raises full-year outlook on strong {prod} demand",
        "{firm} upgrades {co} to buy, citing {prod} momentum",
        "{co} posts record quarterly revenue as {prod} sales surge",
        "{co} stock rallies to all-time high on upbeat guidance",
        "{co} unveils ${n} billion buyback and boosts dividend",
        "{co} wins major {prod} contract, shares climb",
    ),
    "negative": (
        "{co} shares slide {pct}% after revenue misses expectations",
        "{co} cuts guidance as {prod} demand weakens",
        "{firm} downgrades {co} to sell on margin pressure",
        "{co} faces regulatory probe over {prod} practices",
        "{co} to cut jobs as growth slows",
        "{co} stock tumbles on disappointing {prod} outlook",
        "{co} hit with lawsuit over {prod}, shares fall",
    ),
    "neutral": (
        "{co} to report quarterly results next week",
        "{co} holds annual shareholder meeting",
        "What to watch in {co}'s {prod} business",
        "{co} names new head of {prod}",
        "{co} shares little changed ahead of Fed decision",
        "{co} declares regular quarterly dividend",
        "{co} schedules investor day to discuss {prod} strategy",
    ),
}
ETF_HEADLINES = {
    "positive": ("{co} climbs as stocks rally on upbeat economic data", "{co} hits record as {prod} extend gains",
                 "Investors pour billions into {co} as the rally broadens"),
    "negative": ("{co} slides as bond yields jump", "{co} posts worst week in months as {prod} sell off",
                 "Investors pull billions from {co} as recession fears grow"),
    "neutral": ("{co} little changed ahead of Fed minutes", "What {prod} signal for {co} this week",
                "{co} trades in a tight range as traders await inflation data"),
}
ETF_SENTENCES = {
    "positive": ("The {co} ({exch}: {tk}) rose {pct}% as {prod} rallied broadly.",
                 "Inflows into the fund surged, a sign of strong investor appetite.",
                 "Market breadth improved, with most sectors finishing higher.",
                 "Strategists at {firm} raised their year-end target, citing resilient earnings."),
    "negative": ("The {co} ({exch}: {tk}) fell {pct}% as {prod} sold off.",
                 "Investors pulled money from the fund as volatility spiked.",
                 "Losses were broad, with most sectors finishing lower on recession fears.",
                 "Strategists at {firm} cut their year-end target, warning of weaker earnings."),
    "neutral": ("The {co} ({exch}: {tk}) was little changed in quiet trading.",
                "Flows into the fund were roughly in line with recent weeks.",
                "Traders are waiting for the next inflation report before taking big positions.",
                "Strategists at {firm} left their year-end target unchanged."),
}
PAIR_HEADLINES = {
    "positive": ("{co} and {co2} lead the market higher", "{co} and {co2} rally as tech stocks rebound"),
    "negative": ("{co} and {co2} drag the market lower", "{co} and {co2} sink as investors dump megacaps"),
    "neutral": ("{co} and {co2} in focus as earnings season begins", "How {co} and {co2} stack up this quarter"),
}
SENTENCES = {
    "positive": (
        "{co} beat analyst estimates on both revenue and earnings, and management raised its outlook.",
        "Demand for {prod} was stronger than expected, driving record revenue.",
        "Operating margin expanded as costs fell, a clear sign of improving profitability.",
        "Analysts at {firm} upgraded the stock and lifted their price target, calling the results excellent.",
        "Shares of {co} ({exch}: {tk}) surged {pct}% as investors cheered the upbeat guidance.",
        "The company reported robust growth in {prod} and said momentum accelerated through the quarter.",
        "Free cash flow rose sharply, and the board approved a larger buyback and a dividend increase.",
        "Executives said the order backlog is at an all-time high, pointing to strong demand ahead.",
    ),
    "negative": (
        "{co} missed analyst estimates, and management cut its full-year guidance.",
        "Demand for {prod} weakened sharply, and revenue declined from a year earlier.",
        "Margins contracted as costs rose, raising concerns about profitability.",
        "Analysts at {firm} downgraded the stock and slashed their price target, citing deteriorating trends.",
        "Shares of {co} ({exch}: {tk}) plunged {pct}% as investors reacted to the disappointing results.",
        "Regulators opened an investigation, and the company warned of possible fines and legal costs.",
        "The company announced layoffs and a restructuring charge as sales slumped.",
        "Executives warned that inventory is piling up and that weakness could persist for several quarters.",
    ),
    "neutral": (
        "{co} is scheduled to report results later this month.",
        "The company reiterated its previous guidance and said {prod} trends were in line with plans.",
        "Shares of {co} ({exch}: {tk}) traded flat in early trading.",
        "Analysts at {firm} maintained a hold rating and left their price target unchanged.",
        "The board declared a regular quarterly dividend, unchanged from the prior quarter.",
        "Management will host an investor day to discuss its {prod} strategy.",
        "Trading volume was roughly in line with the 30-day average.",
        "The company said it continues to evaluate options for its {prod} business.",
    ),
}


def fill(template: str, r: random.Random, co: Company, co2: Company | None = None) -> str:
    return template.format(
        co=co.short,
        co2=co2.short if co2 else co.short,
        tk=co.ticker,
        exch="NASDAQ" if co.exchange == "Nasdaq" else "NYSE",
        prod=r.choice(co.products),
        firm=r.choice(ANALYST_FIRMS),
        pct=f"{r.uniform(1.5, 12.0):.1f}",
        n=r.choice((5, 10, 15, 20, 25, 50)),
    )


def sentences(r: random.Random, sentiment: str, co: Company, count: int) -> list[str]:
    bank = (ETF_SENTENCES if co.kind == "etf" else SENTENCES)[sentiment]
    picks = r.sample(range(len(bank)), min(count, len(bank)))
    return [fill(bank[i], r, co) for i in picks]


# -- news articles ------------------------------------------------------------------------------------------
NEWS_SOURCES = (
    ("reuters", "Reuters", "reuters.com"),
    ("bloomberg", "Bloomberg", "bloomberg.com"),
    ("the-wall-street-journal", "The Wall Street Journal", "wsj.com"),
    ("cnbc", "CNBC", "cnbc.com"),
    ("business-insider", "Business Insider", "businessinsider.com"),
    ("fortune", "Fortune", "fortune.com"),
    (None, "Yahoo Entertainment", "finance.yahoo.com"),
    (None, "Motley Fool", "fool.com"),
    (None, "Benzinga", "benzinga.com"),
    (None, "Seeking Alpha", "seekingalpha.com"),
    (None, "MarketWatch", "marketwatch.com"),
    (None, "Investopedia", "investopedia.com"),
)

NEWS_SLOT_MS = 3_600_000  # one candidate article per ticker and hour


@dataclass(frozen=True, slots=True)
class Article:
    uid: str
    tickers: tuple[str, ...]
    sentiment: str
    source_id: str | None
    source_name: str
    author: str | None
    title: str
    description: str
    url: str
    url_to_image: str | None
    published_ms: int
    body: str
    popularity: float


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:80]


@lru_cache(maxsize=65_536)
def news_slot(seed: int, ticker: str, slot: int, universe: tuple[str, ...]) -> tuple[Article, ...]:
    """Articles whose primary ticker is ``ticker`` published in hour ``slot`` (ms // 3.6e6): zero, one, or
    one plus a syndicated exact copy under another outlet's URL."""
    if unit(seed, "news?", ticker, slot) >= 0.3:
        return ()
    r = rng(seed, "news", ticker, slot)
    co = company(ticker)
    sentiment = pick_sentiment(r)
    others = [t for t in universe if t != ticker]
    co2 = company(r.choice(others)) if others and r.random() < 0.2 else None
    if co2 is not None:
        title = fill(r.choice(PAIR_HEADLINES[sentiment]), r, co, co2)
    else:
        title = fill(r.choice((ETF_HEADLINES if co.kind == "etf" else HEADLINES)[sentiment]), r, co)
    body_sentences = sentences(r, sentiment, co, 5)
    if co2 is not None:
        body_sentences.append(f"{co2.short} ({co2.ticker}) also featured in the session's trading.")
        body_sentences += sentences(r, "neutral", co2, 1)
    description = " ".join(body_sentences[:2])
    body = " ".join(body_sentences + sentences(r, "neutral", co, 2))
    published = slot * NEWS_SLOT_MS + int(NEWS_SLOT_MS * r.random()) // 1000 * 1000
    source_id, source_name, domain = r.choice(NEWS_SOURCES)
    author = None if r.random() < 0.15 else person(seed, "author", source_name, r.randrange(40))
    day = dt.datetime.fromtimestamp(published / 1000, UTC)
    uid = hashlib.blake2b(repr((seed, ticker, slot)).encode(), digest_size=5).hexdigest()
    path = f"/markets/{day:%Y/%m/%d}/{_slug(title)}-{uid}"
    image = None if r.random() < 0.1 else f"https://media.{domain}/images/{uid}.jpg"
    tickers = (ticker,) if co2 is None else (ticker, co2.ticker)
    article = Article(uid, tickers, sentiment, source_id, source_name, author, title, description,
                      f"https://www.{domain}{path}", image, published, body, round(r.random(), 6))
    if r.random() >= 0.06:
        return (article,)
    # Syndication: the same story, word for word, on a second outlet under its own URL.
    sid, sname, sdomain = r.choice([s for s in NEWS_SOURCES if s[2] != domain])
    copy = Article(uid + "s", tickers, sentiment, sid, sname, article.author, title, description,
                   f"https://www.{sdomain}/news/{_slug(title)}-{uid}s", article.url_to_image, published, body,
                   article.popularity / 2)
    return (article, copy)


# -- social posts -------------------------------------------------------------------------------------------
_POST_TITLES = {
    "positive": ("{tag} to the moon? Earnings beat and guidance raised", "Loaded up on {tag} calls after the beat",
                 "{tag} breaking out, strongest chart in months", "Why I'm bullish on {tag}: {prod} is crushing it",
                 "{tag} DD: undervalued with record {prod} growth"),
    "negative": ("{tag} is in trouble, {prod} demand is collapsing", "Bought {tag} puts, guidance cut incoming",
                 "{tag} bagholders, how are we feeling?", "Why I sold all my {tag}: margins are falling apart",
                 "{tag} downgrade - is this the top?"),
    "neutral": ("{tag} earnings next week, what are your expectations?", "Thoughts on {tag} at current levels?",
                "{tag} vs {tag2} for a long-term hold?", "What's going on with {tag} today?",
                "Question about {tag} options expiry"),
}
_POST_BODIES = {
    "positive": ("Revenue beat, EPS beat, and they raised the outlook. {prod} demand looks incredibly strong.",
                 "Margins are expanding and the buyback is huge. This is a great setup, very bullish here.",
                 "Every analyst is upgrading. I think {co} rallies another 10% from here."),
    "negative": ("They missed on revenue and cut guidance. {prod} is getting crushed by competition.",
                 "Margins are shrinking and management sounds worried. This could drop a lot further.",
                 "Downgrades everywhere, insiders selling. Terrible quarter, I'm bearish."),
    "neutral": ("Not sure what to make of {co} right now. {prod} seems steady, nothing special.",
                "Holding my shares for now, waiting for the next report before deciding.",
                "Anyone have a view on the {prod} segment? Numbers were in line with expectations."),
}
_TWEETS = {
    "positive": ("{tag} crushing it today, strong beat and raised guidance 🚀", "Huge quarter for {tag}. Bullish.",
                 "{tag} breaking out to new highs, {prod} demand is strong", "Adding more {tag} here, great results"),
    "negative": ("{tag} getting hammered after the guidance cut 📉", "Ugly miss from {tag}. Bearish from here.",
                 "{tag} {prod} demand is falling apart, sold my position", "Downgrade on {tag}, this looks weak"),
    "neutral": ("Watching {tag} into earnings next week", "{tag} flat today, waiting for a catalyst",
                "Any thoughts on {tag} at these levels?", "{tag} {prod} update later this week"),
}
_TWEETS_ES = ("{tag} sube con fuerza tras los resultados", "{tag} cae despues del informe trimestral",
              "Atentos a {tag} esta semana")


def _tag(r: random.Random, co: Company) -> str:
    x = r.random()
    return f"${co.ticker}" if x < 0.55 else co.ticker if x < 0.8 else co.short


@dataclass(frozen=True, slots=True)
class SocialText:
    title: str
    body: str
    tickers: tuple[str, ...]
    sentiment: str


def reddit_text(seed: int, sub: str, number: int, universe: tuple[str, ...]) -> SocialText:
    """Title and self-text of one Reddit post; about one in six mentions no ticker at all."""
    r = rng(seed, "reddit-text", sub, number)
    sentiment = pick_sentiment(r)
    if r.random() < 0.16:
        return SocialText(r.choice(("Daily Discussion Thread", "What are your moves tomorrow?",
                                    "Weekend discussion: market outlook", "Rate my portfolio")),
                          r.choice(("Post your thoughts below.", "Be nice to each other.", "Long-term only.")),
                          (), "neutral")
    co = company(r.choice(universe))
    co2 = company(r.choice(universe))
    template = r.choice(_POST_TITLES[sentiment])
    title = template.format(tag=_tag(r, co), tag2=_tag(r, co2), prod=r.choice(co.products))
    body = " ".join(b.format(co=co.short, prod=r.choice(co.products)) for b in r.sample(_POST_BODIES[sentiment], 2))
    tickers = (co.ticker, co2.ticker) if "{tag2}" in template and co2 != co else (co.ticker,)
    if r.random() < 0.15 and co2.ticker != co.ticker:
        body += f" Also keeping an eye on ${co2.ticker}."
        tickers = tuple(dict.fromkeys((*tickers, co2.ticker)))
    return SocialText(title, body, tickers, sentiment)


def tweet_mentions(seed: int, ticker: str, number: int, universe: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """(tickers the tweet mentions as cashtags, is Spanish): cheap, so searches can skip tweets unread."""
    spanish = unit(seed, "tweet-es", ticker, number) < 0.08
    others = [t for t in universe if t != ticker]
    if spanish or not others or unit(seed, "tweet-co", ticker, number) >= 0.15:
        return (ticker,), spanish
    return (ticker, others[int(len(others) * unit(seed, "tweet-co-pick", ticker, number))]), spanish


def tweet_text(seed: int, ticker: str, number: int,
               universe: tuple[str, ...]) -> tuple[str, str, tuple[str, ...], bool]:
    """(text, lang, tickers mentioned, is_retweet) of one tweet whose primary ticker is ``ticker``.

    The text carries a ``$TICKER`` cashtag for exactly the tickers in ``tweet_mentions``.
    """
    tickers, spanish = tweet_mentions(seed, ticker, number, universe)
    r = rng(seed, "tweet-text", ticker, number)
    co = company(ticker)
    if spanish:
        return r.choice(_TWEETS_ES).format(tag=f"${co.ticker}"), "es", tickers, False
    sentiment = pick_sentiment(r)
    text = r.choice(_TWEETS[sentiment]).format(tag=f"${co.ticker}", prod=r.choice(co.products))
    if len(tickers) == 2:
        text += f" ${tickers[1]} too"
    retweet = r.random() < 0.15
    if retweet:
        text = f"RT @{handle(seed, r.randrange(500))}: {text}"
    return text, "en", tickers, retweet


def handle(seed: int, user: int) -> str:
    r = rng(seed, "handle", user)
    return f"{r.choice(_FIRST).lower()}_{r.choice(('trades', 'invests', 'charts', 'capital', 'fx', 'alpha'))}{user}"


def tweet_sentiment_words() -> dict[str, tuple[str, ...]]:
    """The tweet templates by sentiment (for tests that check the wording carries sentiment)."""
    return dict(_TWEETS)


# -- long-form paragraphs (filings and transcripts) ---------------------------------------------------------
RISK_FACTORS = (
    "The Company's operations and performance depend significantly on global and regional economic "
    "conditions and adverse economic conditions can materially adversely affect the Company's business.",
    "The Company faces substantial competition in its markets for {prod}, and competitors may introduce "
    "products with lower prices or better features, which could reduce demand and compress margins.",
    "The Company depends on the performance of carriers, wholesalers, retailers and other resellers, and "
    "disruptions in these channels could adversely affect net sales of {prod}.",
    "The Company's future performance depends in part on support from third-party software developers "
    "and suppliers, some of which are single or limited sources of critical components.",
    "The Company is subject to laws and regulations worldwide, changes to which could increase the "
    "Company's costs and individually or in the aggregate adversely affect the Company's business.",
    "Investigations, litigation and regulatory proceedings could result in significant fines, damages "
    "or changes to business practices that materially harm results of operations.",
    "Losses or unauthorized access to or releases of confidential information, including personal "
    "information, could subject the Company to significant reputational, financial, legal and operational "
    "consequences.",
    "The Company's business is subject to the risks of international operations, including tariffs, "
    "export controls, sanctions and fluctuations in foreign currency exchange rates.",
    "The Company may be unable to attract and retain key personnel, and the loss of key employees could "
    "disrupt operations and the execution of its {prod} strategy.",
    "The Company's stock price is subject to volatility and could decline significantly in response to "
    "results that fall short of analyst expectations.",
    "Climate change, natural disasters, pandemics and other events beyond the Company's control could "
    "disrupt its supply chain and the demand for {prod}.",
    "The Company has significant indebtedness and may need to raise additional capital on terms that are "
    "unfavorable, which could limit its flexibility and increase its interest expense.",
)
MDA_POSITIVE = (
    "Total net sales increased {growth}% compared to the same period of the prior year, driven primarily by "
    "higher sales of {prod} and favorable pricing.",
    "Gross margin percentage improved to {margin}% due to a more favorable mix and cost savings.",
    "The Company continued to generate strong operating cash flow, which funded share repurchases and "
    "dividends while increasing its cash and marketable securities.",
    "Management believes demand trends for {prod} remain strong and expects continued growth.",
)
MDA_NEGATIVE = (
    "Total net sales decreased {growth_abs}% compared to the same period of the prior year, primarily due to "
    "weaker demand for {prod} and unfavorable foreign currency effects.",
    "Gross margin percentage declined to {margin}% due to lower volumes, price reductions and higher costs.",
    "The Company recorded restructuring charges related to workforce reductions and facility closures.",
    "Management expects challenging conditions for {prod} to persist in the near term.",
)
MDA_NEUTRAL = (
    "Total net sales were {revenue} million, compared with {prior} million in the same period of the prior "
    "year, a change of {growth}%.",
    "Gross margin percentage was {margin}%, broadly consistent with the prior year period.",
    "Operating expenses were in line with management's plans and reflected continued investment in {prod}.",
    "The Company believes its existing balances of cash and marketable securities will be sufficient to "
    "satisfy its working capital needs over the next twelve months.",
)


def paragraphs(r: random.Random, bank: tuple[str, ...], count: int, **fields: object) -> list[str]:
    out = []
    for i in range(count):
        out.append(bank[i % len(bank)].format(**fields) if i < len(bank) else r.choice(bank).format(**fields))
    return out


def mda_bank(sentiment: str) -> tuple[str, ...]:
    return {"positive": MDA_POSITIVE, "negative": MDA_NEGATIVE}.get(sentiment, MDA_NEUTRAL)
