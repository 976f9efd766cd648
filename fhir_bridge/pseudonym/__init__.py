"""Pure, keyed, deterministic transforms that make the research view, driven by one policy.

policy = load_policy()                       # mappings/research-policy.json
view = ResearchView(policy, key)             # key: the secret pseudonym key (bytes)
who = participation(subjects, consents, policy)
if who.included and (who.cutoff is None or not after_cutoff(resource, who.cutoff)):
    out = view.apply(resource, patient_id, anchor=enrolment_date)
"""

from fhir_bridge.pseudonym.consent import (
    Participation,
    after_cutoff,
    clinical_date,
    participation,
)
from fhir_bridge.pseudonym.policy import ConsentRules, ResearchPolicy, load_policy
from fhir_bridge.pseudonym.view import ResearchView, shift_date

__all__ = [
    "ConsentRules",
    "Participation",
    "ResearchPolicy",
    "ResearchView",
    "after_cutoff",
    "clinical_date",
    "load_policy",
    "participation",
    "shift_date",
]
