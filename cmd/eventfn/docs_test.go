package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

// TestReadmeActionReferenceIsCurrent fails when README.md's generated action
// reference differs from what the definitions say.
func TestReadmeActionReferenceIsCurrent(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := replaceGenerated(string(readme), actionReference(actions.Builtin().Definitions()))
	if err != nil {
		t.Fatal(err)
	}
	if want != string(readme) {
		t.Error("README.md's action reference is stale: run `go run ./cmd/eventfn docs -w README.md`")
	}
}

// TestSchemaFileIsCurrent fails when eventfn.schema.json differs from what
// `eventfn schema` prints.
func TestSchemaFileIsCurrent(t *testing.T) {
	got, err := os.ReadFile("../../eventfn.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := schemaJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("eventfn.schema.json is stale: run `go run ./cmd/eventfn schema > eventfn.schema.json`")
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := schemaJSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("eventfn.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("eventfn.schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// instance turns YAML into the JSON value a language server validates.
func instance(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// TestSchemaAcceptsTheExamplesAndRefusesMistakes: the schema validates every
// example file, and refuses mistakes validate refuses.
func TestSchemaAcceptsTheExamplesAndRefusesMistakes(t *testing.T) {
	s := compileSchema(t)
	files, _ := filepath.Glob("../../examples/*/eventfn.yaml")
	files = append(files, "../../bench/rules.yaml")
	if len(files) < 3 {
		t.Fatalf("examples not found: %v", files)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(instance(t, src)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// Included files (rules only, version optional) validate as a file
	// holding their rules.
	includes, _ := filepath.Glob("../../examples/slurm-site/[rs][ey]*.yaml")
	for _, f := range includes {
		if strings.HasSuffix(f, "_test.yaml") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(src, []byte("version:")) {
			src = append([]byte("version: 1\n"), src...)
		}
		if err := s.Validate(instance(t, src)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, bad := range []string{
		`{name: r, on: order, steps: [{webhook: {url: "http://x", method: PSOT}}]}`,
		`{name: r, on: order, steps: [{exec: {argv: [true], ok_exit_code: [1]}}]}`,
		`{name: r, on: order, steps: [{exec: [true], log: hi}]}`,
		`{name: r, on: [order, 5], steps: [{log: hi}]}`,
		`{name: r, on: order, steps: [{log: hi, timeout: 5 minutes}]}`,
		`{name: r, on: order, steps: [{frobnicate: x}]}`,
	} {
		src := "version: 1\nrules:\n  - " + bad + "\n"
		if err := s.Validate(instance(t, []byte(src))); err == nil {
			t.Errorf("schema accepted %s", bad)
		}
	}
}

// TestDefinitionExamplesLoad: the example of every kind's definition is a
// step that validate accepts.
func TestDefinitionExamplesLoad(t *testing.T) {
	for _, d := range actions.Builtin().Definitions() {
		src := fmt.Sprintf("version: 1\nvars: {allocation_prefix: a_, root_account: root}\nsecrets: {hook_token: {env: T}}\nrules:\n  - name: r\n    on: order\n    steps:\n      - %s\n", d.Example)
		if _, err := rules.Parse("example.yaml", []byte(src), rules.Options{Actions: actions.Builtin()}); err != nil {
			t.Errorf("%s: example %s: %v", d.Kind, d.Example, err)
		}
	}
}
