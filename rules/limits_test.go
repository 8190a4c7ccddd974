package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// bomb is a billion-laughs alias bomb of depth levels, indented under
// prefix: 9^levels nodes once expanded.
func bomb(indent string, levels int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%sl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n", indent)
	for i := 1; i < levels; i++ {
		p := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "%sl%d: &l%d [%s]\n", indent, i, i, strings.Repeat(p+", ", 8)+p)
	}
	return b.String()
}

func TestAliasBombIsRefusedFastInBoundedMemory(t *testing.T) {
	for name, src := range map[string]string{
		"in step params": "version: 1\nrules:\n  - name: r\n    on: x\n    steps:\n      - log:\n          message: m\n          fields:\n" + bomb("            ", 9),
		"in vars":        "version: 1\nvars:\n" + bomb("  ", 9) + "rules: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			if len(src) > 1024 {
				t.Fatalf("the bomb is %d bytes; it should be small", len(src))
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Parse("bomb.yaml", []byte(src), testOptions())
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "expands to more than") {
				t.Fatalf("err = %v, want the alias expansion refused", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Errorf("loading the bomb allocated %d MiB", grew>>20)
			}
		})
	}
}

func TestAliasesWithinBoundsStillWork(t *testing.T) {
	rs := mustParse(t, `
version: 1
rules:
  - name: r
    on: x
    steps:
      - log: {message: m, fields: {a: &a [1, 2], b: *a}}
`)
	if rs.Rules[0].Steps[0].Params == nil {
		t.Fatal("no params")
	}
}

func TestFileSizeIsBounded(t *testing.T) {
	src := "version: 1\n#" + strings.Repeat("x", MaxFileBytes) + "\n"
	if _, err := Parse("big.yaml", []byte(src), testOptions()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want the size refused", err)
	}
	dir := t.TempDir()
	main := filepath.Join(dir, "main.yaml")
	if err := os.WriteFile(main, []byte("version: 1\ninclude: [/dev/zero]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(main, testOptions()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("include of /dev/zero: %v, want the size refused", err)
	}
}

func writeRules(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIncludesStayUnderTheRulesDirectory(t *testing.T) {
	root := t.TempDir()
	inc := "version: 1\nrules:\n  - {name: outside, on: x, steps: [{log: m}]}\n"
	outside := writeRules(t, root, "outside/more.yaml", inc)
	main := writeRules(t, root, "site/main.yaml", "version: 1\ninclude: [../outside/*.yaml]\n")
	_, err := Load(main, testOptions())
	if err == nil || !strings.Contains(err.Error(), "outside the rules directory") {
		t.Fatalf("relative include leaving the directory: %v, want it refused", err)
	}
	// A symlink inside the directory that points out of it is outside too.
	if err := os.Symlink(outside, filepath.Join(root, "site", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	writeRules(t, root, "site/main.yaml", "version: 1\ninclude: [link.yaml]\n")
	if _, err := Load(main, testOptions()); err == nil || !strings.Contains(err.Error(), "outside the rules directory") {
		t.Fatalf("symlink out of the directory: %v, want it refused", err)
	}
	writeRules(t, root, "site/main.yaml", "version: 1\ninclude: ["+outside+"]\n")
	rs, err := Load(main, testOptions())
	if err != nil || len(rs.Rules) != 1 {
		t.Fatalf("an absolute include: %v, want it loaded", err)
	}
}

func TestErrorsQuoteAtMostALine(t *testing.T) {
	root := t.TempDir()
	passwd := writeRules(t, root, "passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsecret-line:x:2:2::/:/bin/false\n")
	main := writeRules(t, root, "main.yaml", "version: 1\ninclude: ["+passwd+"]\n")
	_, err := Load(main, testOptions())
	if err == nil {
		t.Fatal("a passwd file included as rules was accepted")
	}
	if strings.Contains(err.Error(), "daemon") || strings.Contains(err.Error(), "secret-line") {
		t.Errorf("the error quotes the file beyond its first line:\n%v", err)
	}
}

func TestIncludeCountIsBounded(t *testing.T) {
	root := t.TempDir()
	for i := range MaxIncludes + 5 {
		writeRules(t, root, fmt.Sprintf("d/%03d.yaml", i), fmt.Sprintf("version: 1\nrules:\n  - {name: r%d, on: x, steps: [{log: m}]}\n", i))
	}
	main := writeRules(t, root, "main.yaml", "version: 1\ninclude: [d/*.yaml]\n")
	if _, err := Load(main, testOptions()); err == nil || !strings.Contains(err.Error(), "included files") {
		t.Fatalf("err = %v, want the include count refused", err)
	}
}
