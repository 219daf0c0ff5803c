"""The wire contract comes from one source: the specs in tests/specs, through a generated table.

* The checked-in table (klarna_async/_contract/spec.py) is what tools/gen_constraints.py makes of
  the specs today: a spec edited without regenerating, or a table edited by hand, fails here.
* Every override names what the spec says now, so a new export that changes an overridden field
  fails here until the override is looked at again.
* The ISO code lists are what tools/gen_codes.py makes of the packaged ISO data.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import attrs
import pytest

from klarna_async._contract import codes, overrides, spec
from klarna_async._contract.kinds import Integer, Object, String
from klarna_async._contract.overrides import CODE_FORMATS, OVERRIDES, contract
from klarna_async._contract.spec import REQUEST_BODIES, SCHEMAS
from klarna_async._rules import REQUEST_SCHEMAS
from tests._spec import load_spec
from tools import gen_codes, gen_constraints

SPEC_DIR = Path(__file__).parent / "specs"
#: The tables this run imports: the source tree's, or the installed wheel's when the suite runs
#: against the wheel (nox -s tests), so the check covers what ships.
SPEC_TABLE = Path(spec.__file__)
CODES_TABLE = Path(codes.__file__)


def test_the_table_is_what_the_specs_say() -> None:
    """Regenerating from tests/specs gives the checked-in table, byte for byte."""
    assert gen_constraints.render(SPEC_DIR) == SPEC_TABLE.read_text(encoding="utf-8")
    assert gen_constraints.main(["--check", "--target", str(SPEC_TABLE)]) == 0


@pytest.mark.parametrize(
    ("file", "before", "after", "changed"),
    [
        # A bound (KP address.postal_code maxLength 10 -> 11).
        (
            "klarna-payments-api-openapi.yml",
            "maxLength: 10",
            "maxLength: 11",
            '"postal_code": String(max_length=11)',
        ),
        # A pattern (CT purchase_currency).
        (
            "klarna-customer-token-api-openapi.yml",
            "pattern: ^[A-Za-z]{3,3}$",
            "pattern: ^[A-Z]{3,3}$",
            '"purchase_currency": String(pattern="^[A-Z]{3,3}$")',
        ),
        # A range (OM captured_amount's maximum).
        (
            "order-management-api-openapi.yml",
            "maximum: 200000000",
            "maximum: 100000000",
            "maximum=100000000",
        ),
    ],
    ids=["length", "pattern", "range"],
)
def test_an_edited_spec_constraint_is_drift(
    tmp_path: Path, file: str, before: str, after: str, changed: str
) -> None:
    """Edit one constraint of a copy of the specs: the table made from it differs from the
    checked-in one, at that constraint."""
    for path in SPEC_DIR.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    text = (tmp_path / file).read_text(encoding="utf-8")
    assert before in text
    (tmp_path / file).write_text(text.replace(before, after, 1), encoding="utf-8")
    regenerated = gen_constraints.render(tmp_path)
    assert regenerated != SPEC_TABLE.read_text(encoding="utf-8")
    assert changed in regenerated


def test_an_unknown_keyword_stops_the_generator(tmp_path: Path) -> None:
    """A keyword the table cannot express (here multipleOf) is an error, never dropped."""
    for path in SPEC_DIR.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    path = tmp_path / "klarna-customer-token-api-openapi.yml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(\n(\s+)minimum: 1\n)", r"\1\2multipleOf: 2\n", text, count=1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(gen_constraints.UnknownKeyword, match="multipleOf"):
        gen_constraints.render(tmp_path)


def test_every_request_body_of_the_specs_is_in_the_table() -> None:
    """The table covers each JSON request body of the three specs, Order Management included,
    and each names its schema as the spec does."""
    apis = {"payments", "customer_token", "order_management"}
    assert {api for api, _, _ in REQUEST_BODIES} == apis
    for (api, method, path), key in REQUEST_BODIES.items():
        spec_name = "order_management" if api == "order_management" else api
        if spec_name == "order_management":
            continue  # tests/_spec.py reads KP and CT only
        operation = load_spec(spec_name)["paths"][path][method.lower()]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert key == f"{api}.{ref.rsplit('/', 1)[-1]}"
    for key in (
        "order_management.CaptureObject",
        "order_management.RefundObject",
        "order_management.Update authorization",
        "order_management.UpdateShippingInfo",
        "order_management.UpdateConsumer",
        "order_management.Update merchant references",
        "order_management.ExtendDueDateRequest",
    ):
        assert key in REQUEST_BODIES.values()
    assert SCHEMAS["order_management.CaptureObject"].required == ("captured_amount",)


_OM = "/ordermanagement/v1/orders/{order_id}"


def test_the_request_models_carry_their_schemas() -> None:
    """Each request model's schema is its operation's request body."""
    operations = {
        "payments.session_create": ("payments", "POST", "/payments/v1/sessions"),
        "payments.create_order_request": (
            "payments",
            "POST",
            "/payments/v1/authorizations/{authorizationToken}/order",
        ),
        "payments.customer_token_creation_request": (
            "payments",
            "POST",
            "/payments/v1/authorizations/{authorizationToken}/customer-token",
        ),
        "customer_token.customer_token_order": (
            "customer_token",
            "POST",
            "/customer-token/v1/tokens/{customerToken}/order",
        ),
        **{
            f"order_management.{name}": ("order_management", method, _OM + path)
            for name, method, path in (
                ("CaptureObject", "POST", "/captures"),
                ("RefundObject", "POST", "/refunds"),
                ("Update authorization", "PATCH", "/authorization"),
                ("Update merchant references", "PATCH", "/merchant-references"),
                ("UpdateConsumer", "PATCH", "/customer-details"),
                ("UpdateShippingInfo", "POST", "/shipping-info"),
                ("ExtendDueDateRequest", "PATCH", "/captures/{capture_id}/extend-due-date"),
            )
        },
    }
    for key in REQUEST_SCHEMAS.values():
        assert REQUEST_BODIES[operations[key]] == key


# --- overrides ------------------------------------------------------------------------------------


def test_each_override_says_why_and_where_from() -> None:
    """Each override changes something, and gives a reason and a source."""
    assert len({(o.schema, o.field) for o in OVERRIDES}) == len(OVERRIDES)
    for override in OVERRIDES:
        assert override.ours != override.spec, override
        assert len(override.reason) > 30, override
        assert re.search(r"S-PAY|S-CT|S-OM|D-STEP3", override.source), override


def test_the_deliberate_differences_are_the_known_ones() -> None:
    """The differences the issue names, as the merged contract has them."""
    merged = contract()
    kp_line_type = merged["payments.order_line"].properties["type"]
    assert isinstance(kp_line_type, String)
    assert kp_line_type.enum is not None
    assert "return_fee" not in kp_line_type.enum
    assert len(kp_line_type.enum) == 8
    assert merged["customer_token.order_line"].properties["tax_rate"] == Integer(
        minimum=0, maximum=10000, format="int64"
    )
    assert merged["customer_token.subscription"].properties["name"] == String(
        min_length=1, max_length=255
    )
    assert merged["payments.customer_token_creation_request"].properties["merchant_urls"] == Object(
        "payments.merchant_urls"
    )
    assert "locale" in merged["customer_token.customer_token_order"].properties
    assert "merchant_urls" not in SCHEMAS["payments.customer_token_creation_request"].properties
    # The generated table itself is untouched.
    assert SCHEMAS["payments.order_line"].properties["type"] == String()


def test_an_override_whose_spec_changed_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """When a new export changes an overridden field, contract() refuses to guess."""
    changed = dict(SCHEMAS)
    line = changed["customer_token.order_line"]
    properties = {**line.properties, "tax_rate": Integer(minimum=0, format="int64")}
    changed["customer_token.order_line"] = attrs.evolve(line, properties=properties)
    monkeypatch.setattr(overrides, "SCHEMAS", changed)
    with pytest.raises(ValueError, match=r"customer_token\.order_line\.tax_rate: the spec now"):
        contract()


def test_code_formats_name_string_fields_of_the_table() -> None:
    """Each field name the code checks apply to is a string field somewhere in the table."""
    found = {
        name
        for schema in contract().values()
        for name, kind in schema.properties.items()
        if isinstance(kind, String) and kind.enum is None
    }
    assert set(CODE_FORMATS) <= found


# --- ISO codes ------------------------------------------------------------------------------------


@pytest.mark.skipif(not gen_codes.DATA.exists(), reason="Debian's iso-codes is not installed")
def test_the_code_lists_are_what_iso_codes_says() -> None:
    """codes.py is gen_codes.py's output for the installed iso-codes data."""
    assert gen_codes.main(["--check", "--target", str(CODES_TABLE)]) == 0


def test_code_lists() -> None:
    """Spot checks, so that the lists cannot be emptied unnoticed."""
    from klarna_async._contract.codes import COUNTRIES, CURRENCIES

    assert {"EUR", "SEK", "USD", "GBP", "NOK", "DKK", "CHF", "AUD", "ZWG"} <= CURRENCIES
    assert not {"XXX", "XTS", "XAU", "EURO", "eur"} & CURRENCIES
    assert {"SE", "US", "GB", "DE", "AU", "NZ", "FI"} <= COUNTRIES
    assert not {"UK", "EU", "XX", "se"} & COUNTRIES
    assert all(len(code) == 3 and code.isupper() for code in CURRENCIES)
    assert all(len(code) == 2 and code.isupper() for code in COUNTRIES)
