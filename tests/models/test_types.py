"""The descriptor types: how a field's type decides its checks, and what a model offers the
terminal and the filters (its fields by id, its uploads, its placeholders, its read-only
role limits)."""

from __future__ import annotations

import operator

import attrs
from twisted.trial.unittest import SynchronousTestCase

from runnergw.models.types import FieldSpec, ModelDescriptor, OutputSpec, RoleLimit

__all__ = ["FieldSpecTests", "ModelDescriptorTests"]


def _model(**changes: object) -> ModelDescriptor:
    """A model with one upload, one select field and one output."""
    values: dict[str, object] = {
        "path": "m.json", "endpoint": "e", "command": "tool <a> x<b><a> <out>",
        "fields": [FieldSpec(id="a", type="fileUpload"), FieldSpec(id="b", type="select")],
        "outputs": [OutputSpec(id="out", type="image", format="png")],
        "role_limits": {"pro": [RoleLimit("duration", 1.0)]},
    }
    values.update(changes)
    return ModelDescriptor(**values)  # type: ignore[arg-type]


class FieldSpecTests(SynchronousTestCase):
    """A field's type names how its values are checked."""

    def test_kinds(self) -> None:
        """Number, slider, boolean, select and upload types are checked as such; any other is
        text."""
        for field_type, kind in (("fileUpload", "upload"), ("number", "number"),
                                 ("inputSlider", "number"), ("checkbox", "boolean"),
                                 ("switch", "boolean"), ("boolean", "boolean"),
                                 ("select", "select"), ("text", "text"),
                                 ("colorPicker", "text"), ("other", "text")):
            self.assertEqual(FieldSpec(id="x", type=field_type).kind, kind)

    def test_lists_become_tuples(self) -> None:
        """Options and media types given as lists are kept as tuples: a field is hashable."""
        field = FieldSpec(id="x", type="select", options=[1, 2], accepted_types=["audio/*"])
        self.assertEqual((field.options, field.accepted_types), ((1, 2), ("audio/*",)))
        self.assertEqual(hash(field), hash(FieldSpec(id="x", type="select", options=(1, 2),
                                                     accepted_types=("audio/*",))))


class ModelDescriptorTests(SynchronousTestCase):
    """What a model offers the terminal and the filters."""

    def test_field_by_id(self) -> None:
        """A field is found by its id; an unknown id, or an output's, finds none."""
        model = _model()
        self.assertEqual(model.field("b"), FieldSpec(id="b", type="select"))
        self.assertIsNone(model.field("out"))
        self.assertIsNone(model.field("nope"))

    def test_upload_fields(self) -> None:
        """Only the fileUpload fields are uploads."""
        self.assertEqual(_model().upload_fields, (FieldSpec(id="a", type="fileUpload"),))

    def test_placeholders_once_each_in_order(self) -> None:
        """Every placeholder of the command is named once, in order of first appearance."""
        self.assertEqual(_model().placeholders, ("a", "b", "out"))

    def test_role_limits_are_read_only(self) -> None:
        """Role limits cannot be changed once the model is read, nor the model itself."""
        model = _model()
        self.assertEqual(model.role_limits["pro"], (RoleLimit("duration", 1.0),))
        self.assertRaises(TypeError, operator.setitem, model.role_limits, "x", ())
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, model, "command", "x")

    def test_absent_roles_allow_any_role(self) -> None:
        """No allowed_roles is None (any role); an empty list allows none."""
        self.assertIsNone(_model().allowed_roles)
        self.assertEqual(_model(allowed_roles=[]).allowed_roles, ())
