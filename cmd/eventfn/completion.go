package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

const completionUsage = `usage: eventfn completion bash|zsh|fish

Prints a completion script for the shell: commands, each command's flags, and
file names for their arguments.

examples:
  source <(eventfn completion bash)
  eventfn completion zsh > "${fpath[1]}/_eventfn"
  eventfn completion fish > ~/.config/fish/completions/eventfn.fish
`

func cmdCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("completion", completionUsage, stderr)
	pos, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return 2
	}
	cmds := completionCommands(ctx)
	switch pos[0] {
	case "bash":
		fmt.Fprint(stdout, bashCompletion(cmds))
	case "zsh":
		fmt.Fprint(stdout, zshCompletion(cmds))
	case "fish":
		fmt.Fprint(stdout, fishCompletion(cmds))
	default:
		fmt.Fprintf(stderr, "eventfn: completion %q: want bash, zsh or fish\n", pos[0])
		return 2
	}
	return 0
}

type completionCommand struct {
	name, summary string
	flags         []string
}

var flagLine = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9-]*)`)

// completionCommands lists the commands with the flags their --help shows.
func completionCommands(ctx context.Context) []completionCommand {
	var out []completionCommand
	for _, c := range commands() {
		if c.name == "completion" {
			out = append(out, completionCommand{name: c.name, summary: c.summary})
			continue
		}
		var help bytes.Buffer
		c.run(ctx, []string{"--help"}, io.Discard, &help)
		var flags []string
		for _, m := range flagLine.FindAllStringSubmatch(help.String(), -1) {
			dash := "--"
			if len(m[1]) == 1 {
				dash = "-"
			}
			flags = append(flags, dash+m[1])
		}
		sort.Strings(flags)
		out = append(out, completionCommand{name: c.name, summary: c.summary, flags: flags})
	}
	return out
}

func bashCompletion(cmds []completionCommand) string {
	var b strings.Builder
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	b.WriteString("# bash completion for eventfn: source <(eventfn completion bash)\n")
	b.WriteString("_eventfn() {\n  local cur=${COMP_WORDS[COMP_CWORD]}\n")
	fmt.Fprintf(&b, "  if [ \"$COMP_CWORD\" -eq 1 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n", strings.Join(names, " ")+" --version --help")
	b.WriteString("  case ${COMP_WORDS[1]} in\n")
	for _, c := range cmds {
		words := strings.Join(c.flags, " ")
		if c.name == "completion" {
			words = "bash zsh fish"
		}
		fmt.Fprintf(&b, "    %s) if [[ $cur == -* || %q == \"bash zsh fish\" ]]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); else COMPREPLY=($(compgen -f -- \"$cur\")); fi ;;\n", c.name, words, words)
	}
	b.WriteString("  esac\n}\ncomplete -o filenames -F _eventfn eventfn\n")
	return b.String()
}

func zshCompletion(cmds []completionCommand) string {
	var b strings.Builder
	b.WriteString("#compdef eventfn\n# zsh completion for eventfn\n_eventfn() {\n  local -a cmds\n  cmds=(\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "    %q\n", c.name+":"+c.summary)
	}
	b.WriteString("  )\n  if (( CURRENT == 2 )); then _describe command cmds; return; fi\n  case $words[2] in\n")
	for _, c := range cmds {
		if c.name == "completion" {
			b.WriteString("    completion) _values shell bash zsh fish ;;\n")
			continue
		}
		fmt.Fprintf(&b, "    %s) _arguments", c.name)
		for _, f := range c.flags {
			fmt.Fprintf(&b, " '%s[]'", f)
		}
		b.WriteString(" '*:file:_files' ;;\n")
	}
	b.WriteString("  esac\n}\n_eventfn \"$@\"\n")
	return b.String()
}

func fishCompletion(cmds []completionCommand) string {
	var b strings.Builder
	b.WriteString("# fish completion for eventfn\ncomplete -c eventfn -f\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "complete -c eventfn -n __fish_use_subcommand -a %s -d %q\n", c.name, c.summary)
		if c.name == "completion" {
			b.WriteString("complete -c eventfn -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
			continue
		}
		fmt.Fprintf(&b, "complete -c eventfn -n '__fish_seen_subcommand_from %s' -F\n", c.name)
		for _, f := range c.flags {
			if strings.HasPrefix(f, "--") {
				fmt.Fprintf(&b, "complete -c eventfn -n '__fish_seen_subcommand_from %s' -l %s\n", c.name, f[2:])
			} else {
				fmt.Fprintf(&b, "complete -c eventfn -n '__fish_seen_subcommand_from %s' -s %s\n", c.name, f[1:])
			}
		}
	}
	return b.String()
}
