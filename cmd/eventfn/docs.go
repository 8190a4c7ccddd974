package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner/sources"
	"github.com/eventfn/eventfn/spec"
)

const schemaUsage = `usage: eventfn schema [-o json|yaml]

Prints the JSON Schema of the rules file, built from the same definitions the
loader checks against (every action kind's parameters included). Editors with
the YAML language server use it with a first line
  # yaml-language-server: $schema=eventfn.schema.json

example:
  eventfn schema > eventfn.schema.json
`

func cmdSchema(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("schema", schemaUsage, stderr)
	output := fs.String("o", "json", "output format: json or yaml")
	if _, code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *output == "yaml" {
		if err := printData(stdout, "yaml", rules.Schema(actions.Builtin(), config.Sections(sources.Standard()))); err != nil {
			fmt.Fprintln(stderr, "eventfn:", err)
			return 1
		}
		return 0
	}
	if *output != "json" {
		fmt.Fprintf(stderr, "eventfn: -o %q: want json or yaml\n", *output)
		return 2
	}
	b, err := schemaJSON()
	if err != nil {
		fmt.Fprintln(stderr, "eventfn:", err)
		return 1
	}
	_, _ = stdout.Write(b)
	return 0
}

func schemaJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rules.Schema(actions.Builtin(), config.Sections(sources.Standard()))); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

const docsUsage = `usage: eventfn docs [-w FILE]

Prints the action reference (every kind, parameter, type, default and
example) in Markdown, generated from the action definitions. With -w, replaces
the generated block of FILE (between the BEGIN/END GENERATED markers).

example:
  eventfn docs -w README.md
`

// Markers around the generated action reference in README.md.
const (
	docsBegin = "<!-- BEGIN GENERATED: action reference (eventfn docs -w README.md) -->"
	docsEnd   = "<!-- END GENERATED: action reference -->"
)

func cmdDocs(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("docs", docsUsage, stderr)
	write := fs.String("w", "", "file whose generated block to replace")
	if _, code := parseFlags(fs, args); code >= 0 {
		return code
	}
	ref := actionReference(actions.Builtin().Definitions())
	if *write == "" {
		fmt.Fprint(stdout, ref)
		return 0
	}
	old, err := os.ReadFile(*write)
	if err != nil {
		fmt.Fprintln(stderr, "eventfn:", err)
		return 1
	}
	updated, err := replaceGenerated(string(old), ref)
	if err != nil {
		fmt.Fprintf(stderr, "eventfn: %s: %v\n", *write, err)
		return 1
	}
	if err := os.WriteFile(*write, []byte(updated), 0o644); err != nil { //nolint:gosec // a documentation file, world-readable like the rest of the tree
		fmt.Fprintln(stderr, "eventfn:", err)
		return 1
	}
	return 0
}

// replaceGenerated puts ref between the markers of doc.
func replaceGenerated(doc, ref string) (string, error) {
	i, j := strings.Index(doc, docsBegin), strings.Index(doc, docsEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("no %q … %q block", docsBegin, docsEnd)
	}
	return doc[:i+len(docsBegin)] + "\n" + ref + doc[j:], nil
}

// actionReference renders the definitions as Markdown.
func actionReference(defs []spec.Definition) string {
	var b strings.Builder
	b.WriteString("| kind | shorthand for | what |\n|---|---|---|\n")
	for _, d := range defs {
		sh := "—"
		if d.Shorthand != "" {
			sh = "`" + d.Shorthand + "`"
		}
		fmt.Fprintf(&b, "| [`%s`](#action-%s) | %s | %s |\n", d.Kind, d.Kind, sh, cell(d.Doc))
	}
	for _, d := range defs {
		fmt.Fprintf(&b, "\n#### Action `%s`\n\n%s\n\n", d.Kind, d.Doc)
		if d.Example != "" {
			fmt.Fprintf(&b, "```yaml\n- %s\n```\n\n", d.Example)
		}
		b.WriteString("| parameter | type | required | default | what | example |\n|---|---|---|---|---|---|\n")
		for _, p := range d.Params {
			req := ""
			if p.Required {
				req = "yes"
			}
			doc := p.Doc
			if len(p.Enum) > 0 {
				doc = strings.TrimSpace(doc + " One of: " + strings.Join(p.Enum, ", ") + ".")
			}
			ex := ""
			if p.Example != "" {
				ex = "`" + strings.ReplaceAll(p.Example, "|", `\|`) + "`"
			}
			def := ""
			if p.Default != "" {
				def = "`" + p.Default + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", p.Name, p.Type, req, def, cell(doc), ex)
		}
		if len(d.Result) > 0 {
			b.WriteString("\nResult (`steps.<id>.…`): ")
			parts := make([]string, len(d.Result))
			for i, f := range d.Result {
				parts[i] = fmt.Sprintf("`%s` (%s) %s", f.Name, f.Type, strings.TrimSuffix(f.Doc, "."))
			}
			b.WriteString(strings.Join(parts, "; ") + ".\n")
		}
	}
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
