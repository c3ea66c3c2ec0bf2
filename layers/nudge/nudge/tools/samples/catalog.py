"""The sample product, as tables the generator draws from: plans and prices, onboarding steps,
where customers are and what they are called, the pages and the event properties.

The product is the B2B project-automation SaaS that rules/tracking-plan.yaml describes.
"""

from __future__ import annotations

# Plans and prices (per seat a month); an account at HIGH_VALUE_MRR or more is high value.
HIGH_VALUE_MRR = 2000
SEAT_PRICE = {"free": 0, "team": 20, "business": 45}
NEXT_PLAN = {"free": "team", "team": "business", "business": "enterprise"}
FREE_SEATS = 10
ONBOARDING = ("setup_completed", "project_created", "teammate_invited")
# Every message's context.library.
LIBRARY_NAME = "nudge-sample"
LIBRARY_VERSION = "1"

# Zone, relative weight, usual locale.
ZONES: tuple[tuple[str, float, str], ...] = (
    ("America/New_York", 20, "en-US"),
    ("America/Chicago", 8, "en-US"),
    ("America/Denver", 3, "en-US"),
    ("America/Los_Angeles", 14, "en-US"),
    ("America/Toronto", 4, "en-CA"),
    ("America/Sao_Paulo", 4, "pt-BR"),
    ("America/Mexico_City", 2, "es-MX"),
    ("Europe/London", 10, "en-GB"),
    ("Europe/Dublin", 2, "en-IE"),
    ("Europe/Berlin", 7, "de-DE"),
    ("Europe/Paris", 5, "fr-FR"),
    ("Europe/Madrid", 3, "es-ES"),
    ("Europe/Amsterdam", 3, "nl-NL"),
    ("Asia/Kolkata", 6, "en-IN"),
    ("Asia/Singapore", 3, "en-SG"),
    ("Asia/Tokyo", 3, "ja-JP"),
    ("Australia/Sydney", 3, "en-AU"),
)
CS_AGENTS = ("Priya Raman", "Marcus Webb", "Sofia Alvarez", "Kenji Watanabe", "Amara Okafor")
NAME_HEADS = (
    "Acme", "Northwind", "Bluefin", "Copperleaf", "Driftwood", "Evergreen", "Falcon", "Granite",
    "Harbor", "Ironbark", "Juniper", "Keystone", "Lumen", "Meridian", "Nimbus", "Oakridge",
    "Pinnacle", "Quarry", "Redwood", "Summit", "Tidewater", "Umber", "Vantage", "Willow",
    "Yellowtail", "Zenith", "Atlas", "Beacon", "Cobalt", "Delta", "Ember", "Fjord", "Glacier",
    "Helix", "Indigo", "Kestrel", "Lattice", "Mosaic", "Orbit", "Prairie",
)  # fmt: skip
NAME_TAILS = (
    ("Robotics", "manufacturing"), ("Analytics", "software"), ("Logistics", "logistics"),
    ("Health", "healthcare"), ("Labs", "software"), ("Studio", "agency"), ("Foods", "retail"),
    ("Energy", "energy"), ("Capital", "finance"), ("Learning", "education"), ("Media", "media"),
    ("Systems", "software"), ("Outfitters", "retail"), ("Dental", "healthcare"), ("Legal", "legal"),
    ("Realty", "real estate"), ("Freight", "logistics"), ("Bio", "life sciences"), ("Design", "agency"),
    ("Security", "software"), ("Consulting", "consulting"), ("Manufacturing", "manufacturing"),
    ("Travel", "travel"), ("Insurance", "finance"), ("Events", "agency"), ("Works", "construction"),
)  # fmt: skip

# The page a user usually opens just before an event.
EVENT_PAGES = {
    "setup_completed": ("/setup", "Set up your workspace"),
    "project_created": ("/projects/new", "New project"),
    "teammate_invited": ("/settings/team", "Team"),
    "integration_connected": ("/integrations", "Integrations"),
    "automation_created": ("/automations/new", "New automation"),
    "report_exported": ("/reports", "Reports"),
}
BROWSE_PAGES = (
    ("/dashboard", "Dashboard"),
    ("/projects", "Projects"),
    ("/projects/board", "Project board"),
    ("/inbox", "Inbox"),
    ("/reports", "Reports"),
    ("/automations", "Automations"),
    ("/settings", "Settings"),
)
PREMIUM_FEATURES = {
    "advanced_automation": "/automations/advanced",
    "sso": "/settings/security",
    "audit_log": "/settings/audit-log",
    "portfolio_view": "/portfolio",
    "custom_roles": "/settings/roles",
}
INTEGRATIONS = ("slack", "github", "google_drive", "jira", "salesforce", "hubspot", "microsoft_teams")
# Weighted choices, spelled out so one random() picks them.
SIGNUP_METHODS = ("email",) * 5 + ("google",) * 4 + ("microsoft",)
SIGNUP_SOURCES = ("organic",) * 4 + ("invite",) * 3 + ("paid_search",) * 2 + ("referral",)
INVITE_ROLES = ("member",) * 7 + ("admin",) + ("guest",) * 2
AUTOMATION_TRIGGERS = ("status_changed", "due_date", "schedule", "form_submitted")
REPORT_FORMATS = ("csv",) * 5 + ("pdf",) * 3 + ("xlsx",) * 2
TEMPLATES = ("blank", "sprint", "roadmap", "client_onboarding", "content_calendar", "bug_tracker")
