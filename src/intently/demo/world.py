"""A synthetic but plausible B2B world for the demo workspace, generated from a seed.

Every account has a latent buying propensity. A minority are *in market*: from a start
day their intent rises over two weeks and stays up, and that intensity drives how often
their people visit the website (and which pages: pricing, demo, docs), how high their
Bombora topics surge, how often they research the category on G2 and how they answer
LinkedIn ads. Most deals are opened by in-market accounts, weeks after their intent
rose, so the stored signals show what a real pipeline would: accounts that opened deals
were more active in the weeks before. A few deals come from nowhere (inbound, referrals)
and some accounts are old customers, as in any CRM.

The generator is pure: the same seed, account count and `now` give the same world. It
only describes; `intently.demo.service` loads it through the real importers and
services. Names and domains are built from the word lists below (no downloads); they are
invented, and any likeness to a real company's is a coincidence of common words.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from intently.kit.timefmt import US_PER_DAY, US_PER_SECOND

WINDOW_DAYS = 90
DEFAULT_SEED = 20261126

# ---- word lists ------------------------------------------------------------------------------

_PREFIXES = (
    "Acorn", "Alder", "Amber", "Apex", "Arbor", "Argent", "Aster", "Atlas", "Aurora", "Beacon",
    "Birch", "Blue", "Bolt", "Bright", "Brook", "Cedar", "Cinder", "Cobalt", "Copper", "Coral",
    "Crest", "Crystal", "Delta", "Drift", "Ember", "Everest", "Falcon", "Fern", "Flint", "Fox",
    "Garnet", "Glacier", "Granite", "Harbor", "Hawk", "Helix", "Heron", "Horizon", "Indigo",
    "Iron", "Ivory", "Jade", "Juniper", "Keystone", "Lantern", "Larch", "Lumen", "Lynx",
    "Maple", "Marble", "Meadow", "Meridian", "Mesa", "Nimbus", "North", "Nova", "Oak", "Onyx",
    "Orbit", "Osprey", "Pine", "Pioneer", "Polar", "Prism", "Quarry", "Quartz", "Raven",
    "Redwood", "Ridge", "River", "Sable", "Sage", "Silver", "Slate", "Solstice", "Spruce",
    "Stone", "Summit", "Tidal", "Timber", "True", "Vale", "Vertex", "Willow", "Zenith",
)  # fmt: skip
_CORES = (
    "bay", "bridge", "field", "forge", "gate", "grove", "hill", "line", "mark", "path",
    "peak", "point", "port", "rock", "shore", "side", "spring", "stack", "stream", "way",
    "wood", "works", "light", "view", "wave", "crest", "loop", "dale", "ford", "mont",
)  # fmt: skip

# industry -> (descriptor words for the name, Bombora topics it researches, weight)
INDUSTRIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "Software": (("Software", "Labs", "Cloud", "Systems", "Technologies"),
                 ("Marketing Automation", "Account-Based Marketing", "Data Integration"), 24),
    "Financial Services": (("Capital", "Financial", "Payments", "Partners"),
                           ("Revenue Operations", "Data Integration", "Sales Intelligence"), 12),
    "Healthcare": (("Health", "Medical", "Care", "Diagnostics"),
                   ("Customer Data Platform", "Marketing Automation", "Data Integration"), 10),
    "Manufacturing": (("Industries", "Manufacturing", "Components", "Materials"),
                      ("Sales Intelligence", "Lead Generation", "Revenue Operations"), 11),
    "Retail": (("Retail", "Brands", "Goods", "Market"),
               ("Customer Data Platform", "Intent Data", "Marketing Automation"), 9),
    "Logistics": (("Logistics", "Freight", "Supply", "Transport"),
                  ("Sales Intelligence", "Lead Generation", "Data Integration"), 8),
    "Media": (("Media", "Studios", "Publishing", "Digital"),
              ("Intent Data", "Account-Based Marketing", "Customer Data Platform"), 6),
    "Education": (("Learning", "Education", "Academy"),
                  ("Marketing Automation", "Lead Generation", "Customer Data Platform"), 5),
    "Energy": (("Energy", "Power", "Renewables"),
               ("Revenue Operations", "Sales Intelligence", "Data Integration"), 5),
    "Professional Services": (("Consulting", "Advisors", "Group", "Partners"),
                              ("Account-Based Marketing", "Intent Data", "Lead Generation"), 10),
}  # fmt: skip
BOMBORA_TOPICS = tuple(sorted({t for _, topics, _ in INDUSTRIES.values() for t in topics}))

# country -> (top-level domains in order of preference, weight)
COUNTRIES: dict[str, tuple[tuple[str, ...], int]] = {
    "United States": ((".com", ".io", ".co", ".net"), 52),
    "United Kingdom": ((".co.uk", ".com", ".io"), 12),
    "Germany": ((".de", ".com", ".io"), 9),
    "France": ((".fr", ".com"), 6),
    "Netherlands": ((".nl", ".com", ".io"), 5),
    "Canada": ((".ca", ".com", ".io"), 7),
    "Australia": ((".com.au", ".com", ".io"), 5),
    "Sweden": ((".se", ".com"), 4),
}
# (label, smallest, largest employees, weight): most accounts are small, as in any CRM.
SIZES = (
    ("1-50", 8, 50, 22),
    ("51-200", 51, 200, 30),
    ("201-1000", 201, 1000, 27),
    ("1001-5000", 1001, 5000, 14),
    ("5000+", 5001, 60000, 7),
)

_FIRST = (
    "Aisha", "Alex", "Amelia", "Ana", "Ben", "Carlos", "Chen", "Chloe", "Daniel", "David",
    "Elena", "Emma", "Ethan", "Fatima", "Felix", "Grace", "Hana", "Hugo", "Isabel", "Jack",
    "James", "Jana", "Julia", "Kai", "Laura", "Leo", "Lina", "Lucas", "Maria", "Mateo",
    "Maya", "Mia", "Noah", "Nora", "Oliver", "Omar", "Priya", "Rafael", "Ravi", "Sara",
    "Sofia", "Tom", "Yuki", "Zoe",
)  # fmt: skip
_LAST = (
    "Adams", "Alvarez", "Bauer", "Becker", "Brown", "Chen", "Clarke", "Costa", "Dubois",
    "Evans", "Fischer", "Garcia", "Gupta", "Hansen", "Ito", "Jansen", "Khan", "Kim", "Larsen",
    "Lopez", "Martin", "Meyer", "Moreau", "Murphy", "Nguyen", "Novak", "Okafor", "Patel",
    "Rossi", "Schmidt", "Silva", "Singh", "Smith", "Tanaka", "Taylor", "Walsh", "Weber",
    "Wilson", "Young", "Zhang",
)  # fmt: skip
_TITLES = (
    ("VP Marketing", "Marketing", "VP"),
    ("Head of Demand Generation", "Marketing", "Director"),
    ("Marketing Operations Manager", "Marketing", "Manager"),
    ("Director of Revenue Operations", "Operations", "Director"),
    ("Chief Marketing Officer", "Marketing", "C-Level"),
    ("Sales Director", "Sales", "Director"),
    ("Growth Marketing Lead", "Marketing", "Manager"),
    ("Head of Data", "Engineering", "Director"),
)

SELLER_DOMAIN = "sales.intently-demo.com"
REPS = (
    ("Maya Patel", "maya.patel"),
    ("Lucas Weber", "lucas.weber"),
    ("Grace Murphy", "grace.murphy"),
    ("Omar Khan", "omar.khan"),
    ("Sofia Rossi", "sofia.rossi"),
)

# Website pages: (path, title). Browsing pages anyone reads, and buying pages in-market
# accounts read; the default high-value patterns match /pricing, /demo, /contact, /docs.
_BROWSE_PAGES = (
    ("/", "Home"),
    ("/blog/intent-data-explained", "Intent data, explained"),
    ("/blog/abm-playbook-2026", "The ABM playbook"),
    ("/blog/scoring-accounts-without-guesswork", "Scoring accounts without guesswork"),
    ("/product", "Product overview"),
    ("/product/integrations", "Integrations"),
    ("/solutions/marketing", "For marketing teams"),
    ("/solutions/sales", "For sales teams"),
    ("/customers", "Customer stories"),
    ("/about", "About us"),
    ("/careers", "Careers"),
    ("/webinars/abm-in-practice", "Webinar: ABM in practice"),
)
_BUYING_PAGES = (
    ("/pricing", "Pricing"),
    ("/pricing/enterprise", "Enterprise pricing"),
    ("/demo", "Book a demo"),
    ("/docs/getting-started", "Docs: getting started"),
    ("/docs/api", "Docs: API reference"),
    ("/contact", "Contact sales"),
    ("/compare/intently-vs-alternatives", "How we compare"),
    ("/security", "Security and compliance"),
)
SITE = "https://www.intently-demo.com"
FORM_EVENTS = ("Demo Requested", "Form Submitted")

G2_PRODUCT = "intently-demo"
G2_COMPETITORS = ("signalpath", "abmetric", "demandly")
G2_CATEGORY = "account-based-marketing"
# (tag, weight) by how far along the buyer is: browsing the category, then our profile,
# then pricing, comparisons and alternatives.
_G2_EARLY = (("categories.show", 5), ("products.reviews", 2), ("products.features", 2),
             ("ad.category_competitor.show", 1))  # fmt: skip
_G2_LATE = (("products.pricing", 4), ("comparisons.show", 3), ("products.competitors", 2),
            ("products.reviews", 2), ("products.details", 1))  # fmt: skip

CAMPAIGNS = ("ABM Tier 1 - Q4", "Retargeting - Pricing Visitors", "Thought Leadership - Intent")

DEAL_STAGES_OPEN = ("Discovery", "Qualification", "Proposal", "Negotiation")
WON, LOST = "Closed Won", "Closed Lost"
PIPELINE = ("new-business", "New Business")


# ---- what the world holds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str
    title: str
    department: str
    seniority: str


@dataclass(slots=True)
class Company:
    index: int
    name: str
    domain: str
    industry: str
    size: str
    employees: int
    country: str
    linkedin_id: int
    network: str  # the company's office IP range (a CIDR), as an IP-to-company file lists it
    fit: float  # 0..1: how well it fits the seller's ideal customer profile
    propensity: float  # 0..1: latent appetite for the category
    in_market_day: int | None  # day (0 = first day of the window) its buying intent starts
    customer: bool
    people: list[Person] = field(default_factory=list)

    @property
    def external_id(self) -> str:
        return f"CRM-{self.index + 1:06d}"

    @property
    def linkedin_url(self) -> str:
        return f"https://www.linkedin.com/company/{self.linkedin_id}"


@dataclass(frozen=True, slots=True)
class PageView:
    """One page view (or form submission, `event` set) of one visitor of a company."""

    company: int
    visitor: str  # anonymous id
    ip: str
    at: int  # micros
    path: str
    title: str
    event: str | None = None  # a track call's event name (form submissions)
    email: str | None = None  # set on the identify call that goes with a form


@dataclass(frozen=True, slots=True)
class BomboraRow:
    company: int
    topic: str
    week: date  # the week's Monday
    score: int


@dataclass(frozen=True, slots=True)
class G2Event:
    company: int
    event_id: str
    at: int
    tag: str
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class LinkedinRow:
    company: int
    start: date
    end: date  # a week's export row: Start Date to End Date
    campaign: str
    impressions: int
    clicks: int
    engagements: int
    leads: int


@dataclass(frozen=True, slots=True)
class Deal:
    company: int
    external_id: str
    name: str
    amount: float
    stage: str
    created: int  # micros: the deal's start date
    closed: int | None
    owner: int  # index in REPS


@dataclass(frozen=True, slots=True)
class Activity:
    company: int
    external_id: str
    kind: str  # call | email
    at: int
    subject: str
    owner: int
    person: int  # index in the company's people
    direction: str
    outcome: str | None
    minutes: float | None
    opens: int | None
    clicks: int | None
    replies: int | None


@dataclass(slots=True)
class World:
    seed: int
    now: int  # micros: the world ends here; nothing happens after it
    start: int  # micros: the first instant of the 90-day window
    companies: list[Company]
    page_views: list[PageView]
    bombora: list[BomboraRow]
    g2: list[G2Event]
    linkedin: list[LinkedinRow]
    deals: list[Deal]
    activities: list[Activity]

    def day_start(self, day: int) -> int:
        return self.start + day * US_PER_DAY


# ---- generation ------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


class _Names:
    """Unique company names and domains: stems from word lists, a descriptor, a TLD."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names: set[str] = set()
        self.domains: set[str] = set()

    def make(self, industry: str, country: str) -> tuple[str, str]:
        rng = self.rng
        words = INDUSTRIES[industry][0]
        tlds = COUNTRIES[country][0]
        for attempt in range(200):
            prefix = rng.choice(_PREFIXES)
            stem = prefix + rng.choice(_CORES) if rng.random() < 0.7 else prefix
            name = f"{stem} {rng.choice(words)}"
            if attempt >= 50:  # the word lists are nearly used up: number the stem
                stem = f"{stem}{rng.randint(2, 999)}"
                name = f"{stem} {rng.choice(words)}"
            if name in self.names:
                continue
            # Most companies own their stem's domain; the rest add their descriptor.
            base = _slug(stem) if rng.random() < 0.55 else _slug(name)
            for tld in tlds:
                domain = base + tld
                if domain not in self.domains:
                    self.names.add(name)
                    self.domains.add(domain)
                    return name, domain
        raise RuntimeError("could not find a unique company name")  # pragma: no cover


def _person(rng: random.Random, domain: str, taken: set[str]) -> Person:
    for _ in range(20):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}".lower()
        if local not in taken:
            break
    else:
        local = f"{first}.{last}{rng.randint(2, 99)}".lower()
    taken.add(local)
    title, department, seniority = rng.choice(_TITLES)
    return Person(f"{first} {last}", f"{local}@{domain}", title, department, seniority)


def _network(index: int) -> tuple[str, str]:
    """A /28 office range per company, in 45.64.0.0/10 (16 addresses each); (cidr, base)."""
    n = (45 << 24) + (64 << 16) + index * 16
    a, b, c, d = n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255
    return f"{a}.{b}.{c}.{d}/28", f"{a}.{b}.{c}."


def intensity(c: Company, day: int) -> float:
    """The company's buying intent on a day of the window, 0..1: a low background from its
    propensity, and for an in-market company a ramp over two weeks from its start day."""
    base = 0.05 + 0.25 * c.propensity
    if c.customer:
        base += 0.15  # customers read the docs and the blog
    if c.in_market_day is None or day < c.in_market_day:
        return min(base, 1.0)
    ramp = min(1.0, (day - c.in_market_day + 1) / 14)
    return min(1.0, base + (0.45 + 0.35 * c.fit) * ramp)


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: the rates here are small (a few events a day at most)."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def generate(accounts: int = 5000, seed: int = DEFAULT_SEED, now: int | None = None) -> World:
    """The world of `accounts` companies over the 90 days that end at `now` (micros)."""
    if accounts < 1:
        raise ValueError(f"accounts should be at least 1; got {accounts}")
    if now is None:
        now = int(datetime.now(tz=UTC).timestamp() * US_PER_SECOND)
    rng = random.Random(seed)
    # The window is whole UTC days; its last day is today, up to `now`.
    today = now // US_PER_DAY
    start = (today - WINDOW_DAYS + 1) * US_PER_DAY
    world = World(seed, now, start, [], [], [], [], [], [], [])
    names = _Names(rng)
    industries, countries = list(INDUSTRIES), list(COUNTRIES)
    for i in range(accounts):
        industry = rng.choices(industries, [v[2] for v in INDUSTRIES.values()])[0]
        country = rng.choices(countries, [v[1] for v in COUNTRIES.values()])[0]
        size_label, lo, hi, _w = rng.choices(SIZES, [s[3] for s in SIZES])[0]
        employees = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        name, domain = names.make(industry, country)
        # Fit: mid-market software and services fit the seller best.
        fit = rng.random() * 0.6
        fit += (
            0.25 if industry in ("Software", "Professional Services", "Financial Services") else 0
        )
        fit += 0.15 if 51 <= employees <= 5000 else 0
        fit = min(1.0, fit)
        propensity = min(1.0, rng.betavariate(1.2, 4.0) + 0.3 * fit * rng.random())
        customer = rng.random() < 0.03 + 0.03 * fit
        in_market = None
        if not customer and rng.random() < 0.06 + 0.22 * fit * (0.5 + propensity):
            # Buying started anywhere from a month before the window to its last week.
            in_market = rng.randint(-30, WINDOW_DAYS - 7)
        network, _base = _network(i)
        c = Company(
            i, name, domain, industry, size_label, employees, country,
            linkedin_id=10_000_000 + i * 7 + rng.randint(0, 6),
            network=network, fit=fit, propensity=propensity,
            in_market_day=in_market, customer=customer,
        )  # fmt: skip
        taken: set[str] = set()
        c.people = [_person(rng, domain, taken) for _ in range(rng.randint(2, 5))]
        world.companies.append(c)
    for c in world.companies:
        _website(rng, world, c)
        _bombora(rng, world, c)
        _g2(rng, world, c)
        _linkedin(rng, world, c)
        _deals(rng, world, c)
    world.page_views.sort(key=lambda v: v.at)
    return world


def _instant(rng: random.Random, world: World, day: int) -> int:
    """A moment of the day, in office hours mostly, never after `now`."""
    hour = rng.gauss(14.0, 3.0)
    at = world.day_start(day) + int(min(23.9, max(0.0, hour)) * 3600 * US_PER_SECOND)
    at += rng.randint(0, 3599) * US_PER_SECOND
    return min(at, world.now - rng.randint(1, 3600) * US_PER_SECOND)


def _website(rng: random.Random, world: World, c: Company) -> None:
    _, base = _network(c.index)
    visitors = [
        (f"demo-{world.seed}-{c.index}-{k}", f"{base}{rng.randint(1, 14)}")
        for k in range(len(c.people) + 1)
    ]
    for day in range(WINDOW_DAYS):
        x = intensity(c, day)
        # Sessions a day: a trickle for the curious, several for a buying committee.
        sessions = _poisson(rng, 0.01 + 1.1 * x * x)
        for _ in range(sessions):
            who = rng.randrange(len(visitors))
            visitor, ip = visitors[who]
            at = _instant(rng, world, day)
            for _p in range(1 + _poisson(rng, 1.0 + 2.5 * x)):
                if rng.random() < 0.04 + 0.6 * x * x:
                    path, title = rng.choice(_BUYING_PAGES)
                else:
                    path, title = rng.choice(_BROWSE_PAGES)
                world.page_views.append(PageView(c.index, visitor, ip, at, path, title))
                at = min(at + rng.randint(20, 240) * US_PER_SECOND, world.now - 1)
            if x > 0.55 and rng.random() < 0.08 * x and who < len(c.people):
                person = c.people[who]
                world.page_views.append(
                    PageView(c.index, visitor, ip, at, "/demo", "Book a demo",
                             rng.choice(FORM_EVENTS), person.email)
                )  # fmt: skip


def _mondays(world: World) -> list[date]:
    first = datetime.fromtimestamp(world.start / US_PER_SECOND, tz=UTC).date()
    monday = first - timedelta(days=first.weekday())
    if monday < first:
        monday += timedelta(days=7)  # a week that began before the window is left out
    last = datetime.fromtimestamp(world.now / US_PER_SECOND, tz=UTC).date()
    out = []
    while monday <= last:
        out.append(monday)
        monday += timedelta(days=7)
    return out


def _day_of(world: World, d: date) -> int:
    """The window's day number of a date (0: the first day)."""
    midnight = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * US_PER_SECOND
    return (midnight - world.start) // US_PER_DAY


def _bombora(rng: random.Random, world: World, c: Company) -> None:
    topics = INDUSTRIES[c.industry][1]
    for monday in _mondays(world):
        day = int(_day_of(world, monday))
        x = max(intensity(c, min(WINDOW_DAYS - 1, day + d)) for d in range(0, 7))
        for topic in topics:
            # Bombora scores research against the company's own baseline: most weeks sit
            # in the 30s and 40s; a company researching the topic surges past 60.
            score = round(rng.gauss(28 + 60 * x, 8))
            if score >= 50:  # the file lists what is near or above the threshold
                world.bombora.append(BomboraRow(c.index, topic, monday, min(100, score)))


def _g2(rng: random.Random, world: World, c: Company) -> None:
    for day in range(WINDOW_DAYS):
        x = intensity(c, day)
        for _ in range(_poisson(rng, 0.0015 + 0.12 * x**3)):
            late = rng.random() < x
            tags = _G2_LATE if late else _G2_EARLY
            tag = rng.choices([t for t, _ in tags], [w for _, w in tags])[0]
            url, title = _g2_page(rng, tag)
            n = len(world.g2)
            world.g2.append(
                G2Event(c.index, f"g2-{world.seed}-{n}", _instant(rng, world, day), tag, title, url)
            )


def _g2_page(rng: random.Random, tag: str) -> tuple[str, str]:
    base = "https://www.g2.com"
    if tag.startswith("categories") or tag.startswith("ad."):
        return f"{base}/categories/{G2_CATEGORY}", "Best Account-Based Marketing Software | G2"
    if tag == "comparisons.show":
        other = rng.choice(G2_COMPETITORS)
        return f"{base}/compare/{G2_PRODUCT}-vs-{other}", f"Intently vs {other.title()} | G2"
    if tag == "products.competitors":
        return (
            f"{base}/products/{G2_PRODUCT}/competitors/alternatives",
            "Intently alternatives | G2",
        )
    page = tag.split(".", 1)[1]
    return f"{base}/products/{G2_PRODUCT}/{page}", f"Intently {page.title()} | G2"


def _linkedin(rng: random.Random, world: World, c: Company) -> None:
    # Tier 1 targets the best-fitting accounts; retargeting follows pricing-page readers;
    # thought leadership reaches a broad audience.
    campaigns = []
    if c.fit > 0.55:
        campaigns.append(CAMPAIGNS[0])
    if c.in_market_day is not None and rng.random() < 0.6:
        campaigns.append(CAMPAIGNS[1])
    if rng.random() < 0.2:
        campaigns.append(CAMPAIGNS[2])
    if not campaigns:
        return
    size = math.log10(max(10, c.employees))
    for monday in _mondays(world):
        day = int(_day_of(world, monday))
        x = intensity(c, min(WINDOW_DAYS - 1, day + 3))
        end = min(monday + timedelta(days=6), _date_of(world.now))
        for campaign in campaigns:
            if campaign == CAMPAIGNS[1] and (c.in_market_day is None or day < c.in_market_day):
                continue  # nobody to retarget before they read the pricing page
            impressions = _poisson(rng, 6 * size)
            if impressions == 0:
                continue
            clicks = _poisson(rng, impressions * (0.004 + 0.05 * x * x))
            engagements = clicks + _poisson(rng, impressions * 0.01 * (0.5 + x))
            leads = 1 if clicks and rng.random() < 0.15 * x else 0
            world.linkedin.append(
                LinkedinRow(c.index, monday, end, campaign, impressions, clicks, engagements, leads)
            )


def _date_of(us: int) -> date:
    return datetime.fromtimestamp(us / US_PER_SECOND, tz=UTC).date()


def _deals(rng: random.Random, world: World, c: Company) -> None:
    if c.customer:
        # An old customer: won long before the window, with its renewal calls.
        created = world.start - rng.randint(120, 500) * US_PER_DAY
        _deal(rng, world, c, created, WON, created + rng.randint(30, 100) * US_PER_DAY)
        for _ in range(rng.randint(1, 3)):
            _activity(rng, world, c, rng.randint(0, WINDOW_DAYS - 1), "Account review")
        return
    day: int | None = None
    if c.in_market_day is not None and rng.random() < 0.55 + 0.3 * c.fit:
        # Sales reach out once the intent shows; the deal opens three to seven weeks later.
        day = c.in_market_day + rng.randint(21, 49)
    elif rng.random() < 0.006:
        day = rng.randint(0, WINDOW_DAYS - 1)  # inbound, a referral: no intent before it
    if day is None or day >= WINDOW_DAYS:
        if (
            c.in_market_day is not None
            and c.in_market_day + 10 < WINDOW_DAYS
            and rng.random() < 0.5
        ):
            # Prospecting: reps chase the intent before any deal exists.
            for _ in range(rng.randint(1, 3)):
                _activity(rng, world, c, rng.randint(c.in_market_day + 7, WINDOW_DAYS - 1),
                          "Prospecting")  # fmt: skip
        return
    created = _instant(rng, world, max(0, day))
    age = (world.now - created) // US_PER_DAY
    if age > 45 and rng.random() < 0.6:
        stage = WON if rng.random() < 0.45 else LOST
        closed: int | None = created + rng.randint(30, age) * US_PER_DAY
    else:
        # Further along the longer it has been open.
        reach = min(len(DEAL_STAGES_OPEN) - 1, int(age // 12))
        stage = DEAL_STAGES_OPEN[rng.randint(max(0, reach - 1), reach)]
        closed = None
    _deal(rng, world, c, created, stage, closed)
    first = max(0, day - rng.randint(5, 20))
    for _ in range(rng.randint(3, 10)):
        _activity(rng, world, c, rng.randint(first, WINDOW_DAYS - 1), "Deal")


def _deal(
    rng: random.Random, world: World, c: Company, created: int, stage: str, closed: int | None
) -> None:
    n = len(world.deals)
    seats = max(5, int(c.employees * rng.uniform(0.01, 0.05)))
    amount = float(round(min(250_000, 2_400 + seats * rng.choice((180, 240, 360))), -2))
    product = rng.choice(("Platform", "Growth plan", "Enterprise plan", "Intent add-on"))
    world.deals.append(
        Deal(
            c.index,
            f"DEAL-{world.seed}-{n + 1:05d}",
            f"{c.name} - {product}",
            amount,
            stage,
            created,
            closed,
            rng.randrange(len(REPS)),
        )
    )


_CALL_OUTCOMES = ("Connected", "Left voicemail", "No answer", "Meeting booked")
_EMAIL_SUBJECTS = {
    "Prospecting": ("Noticed your team researching ABM", "Quick question about your pipeline",
                    "Intent data for {name}"),
    "Deal": ("Following up on our call", "Proposal for {name}", "Next steps",
             "Security questionnaire", "Pricing options for {name}"),
    "Account review": ("Quarterly review", "Renewal planning", "New features this quarter"),
}  # fmt: skip


def _activity(rng: random.Random, world: World, c: Company, day: int, why: str) -> None:
    n = len(world.activities)
    at = _instant(rng, world, day)
    who = rng.randrange(len(c.people))
    owner = rng.randrange(len(REPS))
    if rng.random() < 0.4:
        outcome = rng.choice(_CALL_OUTCOMES)
        minutes = (
            round(rng.uniform(1, 45), 1) if outcome in ("Connected", "Meeting booked") else 0.5
        )
        world.activities.append(
            Activity(c.index, f"ACT-{world.seed}-{n + 1:06d}", "call", at,
                     f"{why} call with {c.people[who].name}", owner, who,
                     rng.choice(("outbound", "outbound", "inbound")), outcome, minutes,
                     None, None, None)
        )  # fmt: skip
        return
    subject = rng.choice(_EMAIL_SUBJECTS[why]).format(name=c.name)
    opens = _poisson(rng, 1.5)
    world.activities.append(
        Activity(c.index, f"ACT-{world.seed}-{n + 1:06d}", "email", at, subject, owner, who,
                 "outbound", None, None, opens, _poisson(rng, 0.4) if opens else 0,
                 1 if opens and rng.random() < 0.3 else 0)
    )  # fmt: skip
