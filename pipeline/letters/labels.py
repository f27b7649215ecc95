"""The words of a letter that are not in a template: dates, data categories and legal bases per language.

The policy describes its categories and legal bases in one language (English in the French defaults);
a letter in French should not quote English, so the default policy's wording is translated here. A
category or basis a site adds is quoted as its policy words it, or by its id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

Lang = Literal["fr", "en"]
NBSP = "\u00a0"
LANGS: tuple[Lang, ...] = ("fr", "en")

CNIL_COMPLAINTS_URL = "https://www.cnil.fr/fr/plaintes"
CNIL_POSTAL_ADDRESS = "CNIL, 3 place de Fontenoy, TSA 80715, 75334 Paris Cedex 07"

_MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
}

# The default policy's categories (pipeline/defaults/policy.yaml), in words a person reads.
CATEGORIES: dict[Lang, dict[str, str]] = {
    "fr": {
        "account": "compte client (identifiant, adresse e-mail, nom, téléphone)",
        "profile": "profil (préférences, avatar, biographie)",
        "address": "adresses postales",
        "orders": "commandes et leurs lignes",
        "invoices": "factures émises et avoirs",
        "accounting_records": "écritures comptables et pièces justificatives (dont vos commandes)",
        "tax_records": "pièces que l'administration fiscale peut contrôler (justificatifs de TVA)",
        "dispute_evidence": "éléments de preuve conservés pour un litige ou une réclamation",
        "card_data": "numéro et date d'expiration de carte bancaire conservés comme preuve en cas de "
                     "contestation d'un paiement (jamais le cryptogramme)",
        "fraud_signals": "signaux de lutte contre la fraude (empreintes d'appareil, scores de risque)",
        "support": "demandes et messages adressés au service client",
        "newsletter_consent": "inscriptions à la lettre d'information et preuves de consentement",
        "newsletter": "contact de la lettre d'information chez notre prestataire d'e-mailing",
        "email_marketing": "profil marketing chez notre prestataire d'e-mailing",
        "session": "sessions de connexion en cache",
        "uploads": "fichiers que vous avez déposés ou exports préparés pour vous",
    },
    "en": {
        "account": "customer account (login, e-mail address, name, phone)",
        "profile": "profile (preferences, avatar, biography)",
        "address": "postal addresses",
        "orders": "orders and their lines",
        "invoices": "issued invoices and credit notes",
        "accounting_records": "accounting entries and supporting documents (your orders among them)",
        "tax_records": "documents the tax authority may inspect (VAT vouchers)",
        "dispute_evidence": "evidence kept for a dispute or claim",
        "card_data": "payment card number and expiry date kept as proof in case a payment is disputed "
                     "(never the security code)",
        "fraud_signals": "anti-fraud signals (device fingerprints, risk scores)",
        "support": "requests and messages sent to customer support",
        "newsletter_consent": "newsletter subscriptions and consent records",
        "newsletter": "newsletter contact at our e-mailing processor",
        "email_marketing": "marketing profile at our e-mailing processor",
        "session": "cached login sessions",
        "uploads": "files you uploaded or exports prepared for you",
    },
}

# The default policy's legal bases, as the person reads them (the citation is quoted as it stands).
LEGAL_BASES: dict[Lang, dict[str, str]] = {
    "fr": {
        "GDPR Art. 17(3)(b): legal obligation (accounting)":
            "obligation légale comptable (RGPD, art. 17.3.b)",
        "GDPR Art. 17(3)(b): legal obligation (tax)": "obligation légale fiscale (RGPD, art. 17.3.b)",
        "GDPR Art. 17(3)(b): legal obligation": "obligation légale (RGPD, art. 17.3.b)",
        "GDPR Art. 17(3)(e): establishment, exercise or defence of legal claims":
            "constatation, exercice ou défense de droits en justice (RGPD, art. 17.3.e)",
        "GDPR Art. 17(3)(e): proof in case of chargeback":
            "preuve en cas de contestation d'un paiement (RGPD, art. 17.3.e)",
        "GDPR Art. 17(3)(e) and legitimate interest: fraud prevention (site policy)":
            "lutte contre la fraude, intérêt légitime, selon notre politique documentée (RGPD, art. 17.3.e)",
    },
    "en": {},
}


def format_date(moment: datetime | None, lang: Lang) -> str:
    """A calendar date in words, in UTC (the ledger's dates): 1er mars 2026, 1 March 2026."""
    if moment is None:
        return ""
    month = _MONTHS[lang][moment.month - 1]
    day = "1er" if lang == "fr" and moment.day == 1 else str(moment.day)
    return f"{day}{NBSP}{month}{NBSP}{moment.year}"  # a date is never broken across lines


def category_label(category: str, lang: Lang, policy_words: dict[str, str]) -> str:
    """A data category in the person's words: our translation, else the policy's, else its id."""
    return CATEGORIES[lang].get(category) or policy_words.get(category) or category.replace("_", " ")


def legal_basis_label(basis: str, lang: Lang) -> str:
    return LEGAL_BASES[lang].get(basis, basis)
