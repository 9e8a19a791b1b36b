// Command customsctl is the command line for Customs: it asks the gRPC API
// what state artifacts are in and what was found, and watches them move.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. Each lives in its own file.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

var commands = map[string]command{
	"get":        {summary: "show one artifact by digest or reference", run: runGet},
	"list":       {summary: "list artifacts, newest first", run: runList},
	"watch":      {summary: "stream artifacts as they change", run: runWatch},
	"history":    {summary: "show the events of one digest in order", run: runHistory},
	"report":     {summary: "show the vulnerability findings of one digest", run: runReport},
	"sbom":       {summary: "print the CycloneDX SBOM of one digest", run: runSBOM},
	"env":        {summary: "show what runs in an environment, pinned by digest", run: runEnv},
	"promotions": {summary: "list promotions, newest first", run: runPromotions},
	"promote":    {summary: "promote a digest or reference into an environment", run: runPromote},
	"rollback":   {summary: "roll an application back in an environment", run: runRollback},
	"rescan":     {summary: "queue a new scan of a digest", run: runRescan},
	// push-event talks to ingest over HTTP, not to the gRPC API.
	"push-event": {summary: "report a pushed image and its provenance to ingest (for CI)", run: runPushEvent},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code. Errors
// are printed as one human sentence, never a stack trace.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "customsctl: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	e := &env{stdout: stdout, stderr: stderr}
	if err := cmd.run(ctx, e, args[1:]); err != nil {
		fmt.Fprintln(stderr, "customsctl "+args[0]+": "+humanError(err, e.server))
		if isUsage(err) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: customsctl <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every command takes --server, --token, --tls, --ca-file, --cert, --key and -o table|json;")
	fmt.Fprintln(w, "run 'customsctl <command> -h' for its flags. Defaults come from CUSTOMS_SERVER, CUSTOMS_TOKEN")
	fmt.Fprintln(w, "and CUSTOMS_CA_FILE. push-event instead takes --url and --token (CUSTOMS_INGEST_URL,")
	fmt.Fprintln(w, "CUSTOMS_CI_TOKEN) and reads GitHub Actions and GitLab CI variables for provenance.")
}
