"""Plans of the research view: per resource type, what to do with each JSON key, read once
per policy from the vendored R4 snapshots (pseudonym/view.py walks resources by them)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_bridge.pseudonym.policy import ResearchPolicy
from fhir_bridge.validation.definitions import PRIMITIVE_TYPES, load_definitions

# What a plan does with the JSON value of an element; the last two are extension keys.
KEEP, DROP, NODE, REF, DATE, BIRTH, REFERENCE, IDENTIFIER, RESOURCE, ID, EXTENSION, ELEMENT = range(
    12
)
DATE_TYPES = frozenset({"date", "dateTime", "instant"})


class Plan:
    """What to do with each JSON key of one type or backbone element."""

    __slots__ = ("actions", "inert", "needs", "required")

    def __init__(self, actions: dict[str, tuple[int, Any]] | None = None) -> None:
        self.actions: dict[str, tuple[int, Any]] = actions or {}
        self.inert: frozenset[str] = frozenset()  # keys whose values are kept as they are
        self.needs: frozenset[str] = frozenset()  # the node is dropped unless one of these stays
        self.required: frozenset[str] = frozenset()  # complex elements of minimum cardinality 1

    def seal(self) -> None:
        self.inert = frozenset(k for k, (op, _) in self.actions.items() if op == KEEP)


class Planner:
    """Builds the plans of every vendored type under one policy."""

    def __init__(self, policy: ResearchPolicy) -> None:
        self.policy = policy
        self.structures: dict[str, Any] = load_definitions()["structures"]
        self.plans: dict[str, Plan] = {}
        self.children: dict[str, list[dict[str, Any]]] = {}
        for structure in self.structures.values():
            for element in structure["elements"]:
                parent, _, _ = element["p"].rpartition(".")
                if parent:
                    self.children.setdefault(parent, []).append(element)

    def plan(self, path: str) -> Plan:
        """The plan of a type ("Coding") or backbone element ("Observation.component")."""
        if path in self.plans:
            return self.plans[path]
        plan = self.plans[path] = Plan()  # registered first: content references recurse
        root = path if "." not in path else ""
        is_resource = self.structures.get(root, {}).get("kind") == "resource"
        if is_resource:
            plan.actions["resourceType"] = (KEEP, None)
        for element in self.children.get(path, []):
            name = element["p"].rpartition(".")[2]
            if "r" in element:
                plan.actions[name] = (NODE, self.plan(element["r"]))
                continue
            types = element["t"]
            if name.endswith("[x]"):
                keys = [(name[:-3] + t[0][0].upper() + t[0][1:], t[0]) for t in types]
            else:
                keys = [(name, types[0][0])]
            if element["n"] >= 1:
                plan.required |= {k for k, t in keys if t not in PRIMITIVE_TYPES}
            for key, type_name in keys:
                action = self.action(f"{path}.{key}", element["p"], type_name)
                if is_resource and key == "id":
                    action = (ID, root)
                plan.actions[key] = action
                if type_name in PRIMITIVE_TYPES:
                    element_action = (ELEMENT, self.plan("Element"))
                    plan.actions["_" + key] = action if action[0] == DROP else element_action
        if path == "Patient":
            # birthTime and other extensions of birthDate would undo the cut to a year
            plan.actions["_birthDate"] = (DROP, None)
        if path == "Reference":
            plan.needs = frozenset({"reference"})
        elif path == "Extension":
            plan.needs = frozenset(k for k in plan.actions if k.startswith(("value", "extension")))
        plan.seal()
        return plan

    def action(self, json_path: str, element_path: str, type_name: str) -> tuple[int, Any]:
        if json_path in self.policy.remove_elements or type_name in self.policy.remove_types:
            return (DROP, None)
        if json_path == "Patient.birthDate":
            return (BIRTH, None)
        if json_path == "Reference.reference":
            return (REFERENCE, None)
        if type_name in DATE_TYPES:
            return (DATE, None)
        if type_name in PRIMITIVE_TYPES:
            return (KEEP, None)
        if type_name == "Reference":
            return (REF, self.plan("Reference"))
        if type_name == "Extension":
            return (EXTENSION, self.plan("Extension"))
        if type_name == "Identifier":
            return (IDENTIFIER, self.plan("Identifier"))
        if type_name == "Resource":
            return (RESOURCE, element_path.endswith(".contained"))
        if element_path in self.children:  # a backbone element, defined in place
            return (NODE, self.plan(element_path))
        return (NODE, self.plan(type_name))


def static_plans(plans: list[Plan]) -> set[int]:
    """ids of the plans whose subtrees hold nothing to change but extensions: the greatest
    fixpoint, as content references (Questionnaire.item.item) make cycles."""
    static = {id(plan) for plan in plans}
    changed = True
    while changed:
        changed = False
        for plan in plans:
            if id(plan) in static and not all(
                op in (KEEP, EXTENSION, ELEMENT) or (op == NODE and id(arg) in static)
                for op, arg in plan.actions.values()
            ):
                static.discard(id(plan))
                changed = True
    return static


def fast_plans(plans: list[Plan]) -> dict[int, Plan]:
    """id(full plan) -> the same plan with static subtrees kept unvisited."""
    static = static_plans(plans)
    fast = {id(plan): Plan() for plan in plans}
    for plan in plans:
        twin = fast[id(plan)]
        for key, (op, arg) in plan.actions.items():
            if op == NODE and id(arg) in static:
                twin.actions[key] = (KEEP, None)
            elif op in (NODE, REF, EXTENSION, ELEMENT, IDENTIFIER):
                twin.actions[key] = (op, fast[id(arg)])
            else:
                twin.actions[key] = (op, arg)
        twin.needs, twin.required = plan.needs, plan.required
        twin.seal()
    return fast


ResourcePlans = dict[tuple[str, bool], Plan]
UNKNOWN = (DROP, None)  # a key no plan knows: removed


@lru_cache(maxsize=8)
def resource_plans(policy: ResearchPolicy) -> tuple[ResourcePlans, ResourcePlans]:
    """(resource type, contained) -> plan, for the fast walk and for the full one; a contained
    resource keeps its local id."""
    planner = Planner(policy)
    names = [
        name
        for name, structure in planner.structures.items()
        if structure["kind"] == "resource" and not structure.get("abstract")
    ]
    for name in names:
        planner.plan(name)
    full = list(planner.plans.values())
    fast = fast_plans(full)
    result: tuple[ResourcePlans, ResourcePlans] = ({}, {})
    for plans, fast_walk in zip(result, (True, False), strict=True):
        for name in names:
            top = planner.plans[name]
            top = plans[(name, False)] = fast[id(top)] if fast_walk else top
            contained = plans[(name, True)] = Plan({**top.actions, "id": (KEEP, None)})
            contained.required = top.required
            contained.seal()
    return result
