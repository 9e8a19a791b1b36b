package deploy

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerfile is the parsed subset of a Dockerfile these checks need.
type dockerfile struct {
	args   map[string]string // ARG defaults before the first FROM
	stages []stage
}

type stage struct {
	from string
	user string
	run  []string
	env  []string
}

// parseDockerfile reads instructions, joining continuation lines. It knows
// only what the checks use: ARG, FROM, USER, ENV and RUN.
func parseDockerfile(text string) dockerfile {
	df := dockerfile{args: map[string]string{}}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if body, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "ARG":
			if len(df.stages) == 0 {
				k, v, _ := strings.Cut(rest, "=")
				df.args[k] = v
			}
		case "FROM":
			from := strings.Fields(rest)[0]
			for k, v := range df.args {
				from = strings.ReplaceAll(from, "${"+k+"}", v)
			}
			df.stages = append(df.stages, stage{from: from})
		case "USER", "RUN", "ENV":
			if len(df.stages) == 0 {
				continue
			}
			s := &df.stages[len(df.stages)-1]
			switch strings.ToUpper(instr) {
			case "USER":
				s.user = rest
			case "RUN":
				s.run = append(s.run, rest)
			case "ENV":
				s.env = append(s.env, strings.Fields(rest)...)
			}
		}
	}
	return df
}

// goWorkVersion is the Go version go.work requires; the builder image must
// be exactly that release (the golang image runs with GOTOOLCHAIN=local).
var goWorkVersion = regexp.MustCompile(`(?m)^go (\d+\.\d+\.\d+)`)

// checkDockerfile: a Go builder of the workspace's Go version making a
// static, stripped binary of the chosen service, shipped alone on
// distroless as nonroot.
func checkDockerfile(df dockerfile, goVersion string) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(df.stages) < 2 {
		return []string{fmt.Sprintf("want a multi-stage build, found %d stage(s)", len(df.stages))}
	}
	build, final := df.stages[0], df.stages[len(df.stages)-1]
	if build.from != "golang:"+goVersion && !strings.HasPrefix(build.from, "golang:"+goVersion+"-") {
		fail("builder %q is not golang:%s, the Go of go.work", build.from, goVersion)
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOEXPERIMENT=jsonv2"} {
		if !slices.Contains(build.env, want) {
			fail("builder does not set %s", want)
		}
	}
	var built bool
	for _, r := range build.run {
		if strings.Contains(r, "go build") {
			built = strings.Contains(r, "-trimpath") && strings.Contains(r, `-ldflags "-s -w"`) && strings.Contains(r, "./services/${SERVICE}")
		}
	}
	if !built {
		fail(`builder does not run go build -trimpath -ldflags "-s -w" ./services/${SERVICE}`)
	}
	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot$`).MatchString(final.from) && final.from != "scratch" {
		fail("final stage %q is not distroless/static:nonroot or scratch", final.from)
	}
	if final.user == "" || strings.HasPrefix(final.user, "root") || strings.HasPrefix(final.user, "0") {
		fail("final stage runs as %q, want a non-root USER", final.user)
	}
	if len(final.run) > 0 {
		fail("final stage runs commands; distroless has no shell")
	}
	return problems
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	text, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	m := goWorkVersion.FindSubmatch(work)
	if m == nil {
		t.Fatal("go.work has no go line")
	}
	if problems := checkDockerfile(parseDockerfile(string(text)), string(m[1])); len(problems) > 0 {
		t.Errorf("Dockerfile:%s", joinErrs(problems))
	}

	// The build context leaves out secrets, local data and VCS history.
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns := strings.Fields(string(ignore))
	for _, want := range []string{".git", ".env", ".customs-data", "deploy/compose/secrets", "bin"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

func TestCheckDockerfileCatches(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	text, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	good := string(text)
	tests := []struct {
		name, old, new, want string
	}{
		{"root user", "USER nonroot:nonroot", "USER root", `runs as "root"`},
		{"no user", "USER nonroot:nonroot", "", `runs as ""`},
		{"full base image", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12", "is not distroless"},
		{"cgo", "CGO_ENABLED=0", "CGO_ENABLED=1", "does not set CGO_ENABLED=0"},
		{"unstripped", `-ldflags "-s -w"`, "", "does not run go build"},
		{"other Go", "ARG GO_VERSION=1.26.8", "ARG GO_VERSION=1.24", "is not golang:1.26.8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(good, tc.old) {
				t.Fatalf("the Dockerfile no longer contains %q; update the case", tc.old)
			}
			if problems := checkDockerfile(parseDockerfile(good), "1.26.8"); len(problems) != 0 {
				t.Fatalf("the unbroken Dockerfile already has problems:%s", joinErrs(problems))
			}
			problems := checkDockerfile(parseDockerfile(strings.Replace(good, tc.old, tc.new, 1)), "1.26.8")
			if !slices.ContainsFunc(problems, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("want a problem containing %q, got:%s", tc.want, joinErrs(problems))
			}
		})
	}
}
