package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// pushEventPath is the ingest CI push API (ingest.CIPushPath).
const pushEventPath = "/v1/push-events"

// pushEventBody is the JSON the CI push API takes (ingest.PushEventRequest;
// customsctl does not import ingest, to stay a small binary).
type pushEventBody struct {
	Reference        string `json:"reference"`
	Digest           string `json:"digest,omitempty"`
	MediaType        string `json:"media_type,omitempty"`
	GitSHA           string `json:"git_sha,omitempty"`
	Semver           string `json:"semver,omitempty"`
	SourceRepository string `json:"source_repository,omitempty"`
	Builder          string `json:"builder,omitempty"`
	BuildURL         string `json:"build_url,omitempty"`
	EventID          string `json:"event_id,omitempty"`
	Actor            string `json:"actor,omitempty"`
}

type pushEventFlags struct {
	url, token, tokenFile, output string
	timeout                       time.Duration
	retries                       int
	body                          pushEventBody
}

// ciDefault returns the first set variable: CUSTOMS_* first, then what
// GitHub Actions and GitLab CI set, so a pipeline step needs few flags.
func ciDefault(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func githubURL(parts ...string) string {
	server, repo := os.Getenv("GITHUB_SERVER_URL"), os.Getenv("GITHUB_REPOSITORY")
	if server == "" || repo == "" {
		return ""
	}
	for _, p := range parts {
		if os.Getenv(p) == "" {
			return ""
		}
	}
	switch len(parts) {
	case 0:
		return server + "/" + repo
	case 1: // workflow ref: "owner/repo/.github/workflows/x.yml@refs/..."
		return server + "/" + os.Getenv(parts[0])
	default: // run id and attempt
		return server + "/" + repo + "/actions/runs/" + os.Getenv(parts[0]) + "/attempts/" + os.Getenv(parts[1])
	}
}

func (f *pushEventFlags) register(fs *flag.FlagSet) {
	b := &f.body
	fs.StringVar(&f.url, "url", ciDefault("CUSTOMS_INGEST_URL"), "ingest base URL, e.g. https://customs.example.com (env CUSTOMS_INGEST_URL)")
	fs.StringVar(&f.token, "token", os.Getenv("CUSTOMS_CI_TOKEN"), "CI push API bearer token (env CUSTOMS_CI_TOKEN)")
	fs.StringVar(&f.tokenFile, "token-file", os.Getenv("CUSTOMS_CI_TOKEN_FILE"), "file holding the token (env CUSTOMS_CI_TOKEN_FILE)")
	fs.StringVar(&b.Reference, "reference", os.Getenv("CUSTOMS_REFERENCE"), "pushed image, registry/repository:tag (env CUSTOMS_REFERENCE)")
	fs.StringVar(&b.Digest, "digest", os.Getenv("CUSTOMS_DIGEST"), "manifest digest docker push printed, sha256:... (env CUSTOMS_DIGEST)")
	fs.StringVar(&b.MediaType, "media-type", os.Getenv("CUSTOMS_MEDIA_TYPE"), "manifest media type, if known (env CUSTOMS_MEDIA_TYPE)")
	fs.StringVar(&b.GitSHA, "git-sha", ciDefault("CUSTOMS_GIT_SHA", "GITHUB_SHA", "CI_COMMIT_SHA"), "commit built (env CUSTOMS_GIT_SHA, GITHUB_SHA, CI_COMMIT_SHA)")
	fs.StringVar(&b.Semver, "semver", os.Getenv("CUSTOMS_SEMVER"), "release version, e.g. v1.2.3 (env CUSTOMS_SEMVER)")
	fs.StringVar(&b.SourceRepository, "source-repository", firstNonEmpty(ciDefault("CUSTOMS_SOURCE_REPOSITORY"), githubURL(), os.Getenv("CI_PROJECT_URL")), "source repository URL (env CUSTOMS_SOURCE_REPOSITORY; GitHub and GitLab CI fill it)")
	fs.StringVar(&b.Builder, "builder", firstNonEmpty(ciDefault("CUSTOMS_BUILDER"), githubURL("GITHUB_WORKFLOW_REF")), "builder identity, e.g. the workflow URI (env CUSTOMS_BUILDER)")
	fs.StringVar(&b.BuildURL, "build-url", firstNonEmpty(ciDefault("CUSTOMS_BUILD_URL"), githubURL("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT"), os.Getenv("CI_JOB_URL")), "link to the CI run (env CUSTOMS_BUILD_URL; GitHub and GitLab CI fill it)")
	fs.StringVar(&b.EventID, "event-id", os.Getenv("CUSTOMS_EVENT_ID"), "your id for this push; re-sends with it are stored once (env CUSTOMS_EVENT_ID)")
	fs.StringVar(&b.Actor, "actor", ciDefault("CUSTOMS_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN"), "who pushed (env CUSTOMS_ACTOR, GITHUB_ACTOR, GITLAB_USER_LOGIN)")
	fs.StringVar(&f.output, "o", "table", "output: table or json")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "deadline for each attempt")
	fs.IntVar(&f.retries, "retries", 3, "retries when ingest is busy or unavailable (429, 503, no connection)")
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// runPushEvent reports a pushed image and its provenance to ingest, for a
// pipeline step right after `docker push`.
func runPushEvent(ctx context.Context, e *env, args []string) error {
	var f pushEventFlags
	fs := flag.NewFlagSet("customsctl push-event", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageErr{err.Error()}
	}
	switch {
	case fs.NArg() != 0:
		return usageErr{fmt.Sprintf("unexpected argument %q (every value is a flag)", fs.Arg(0))}
	case f.url == "":
		return usageErr{"--url is required (or set CUSTOMS_INGEST_URL)"}
	case f.body.Reference == "":
		return usageErr{"--reference is required (or set CUSTOMS_REFERENCE)"}
	case f.body.Digest == "" && !strings.Contains(f.body.Reference, "@"):
		return usageErr{"--digest is required unless the reference has one (docker push prints it)"}
	case f.output != "table" && f.output != "json":
		return usageErr{fmt.Sprintf("-o must be table or json, not %q", f.output)}
	case f.retries < 0:
		return usageErr{"--retries must be 0 or more"}
	}
	if f.token == "" && f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return fmt.Errorf("read token file: %w", err)
		}
		f.token = strings.TrimSpace(string(b))
	}
	if f.token == "" {
		return usageErr{"--token is required (or set CUSTOMS_CI_TOKEN or CUSTOMS_CI_TOKEN_FILE)"}
	}
	target, err := pushEventURL(f.url)
	if err != nil {
		return usageErr{err.Error()}
	}
	payload, err := json.Marshal(f.body)
	if err != nil {
		return fmt.Errorf("encode push event: %w", err)
	}
	out, err := sendPushEvent(ctx, target, f.token, payload, f.timeout, f.retries)
	if err != nil {
		return err
	}
	if f.output == "json" {
		_, err := e.stdout.Write(out)
		return err
	}
	return printPushResult(e.stdout, out)
}

func pushEventURL(base string) (string, error) {
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return "", fmt.Errorf("--url %q must start with http:// or https://", base)
	}
	base = strings.TrimRight(base, "/")
	if strings.HasSuffix(base, pushEventPath) {
		return base, nil
	}
	return base + pushEventPath, nil
}

// ingestError is a refusal from ingest, worded for a person.
type ingestError struct {
	status int
	reason string
}

func (e ingestError) Error() string {
	switch e.status {
	case http.StatusUnauthorized:
		return "not authenticated: " + e.reason + " (pass --token or set CUSTOMS_CI_TOKEN)"
	case http.StatusForbidden:
		return "the token was refused: " + e.reason
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "this server has no CI push API at " + pushEventPath + " (check --url; ingest serves it when CUSTOMS_CI_TOKEN is set)"
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return "the push event was refused: " + e.reason
	case http.StatusUnprocessableEntity:
		return "the image could not be checked in its registry: " + e.reason
	case http.StatusRequestEntityTooLarge:
		return "the push event is too large: " + e.reason
	case http.StatusTooManyRequests:
		return "ingest is rate limiting this pipeline; try again later (" + e.reason + ")"
	case http.StatusServiceUnavailable:
		return "ingest could not store the event right now; try again later (" + e.reason + ")"
	}
	return fmt.Sprintf("ingest answered %d: %s", e.status, e.reason)
}

func retryable(err error) bool {
	var ie ingestError
	if errors.As(err, &ie) {
		return ie.status == http.StatusTooManyRequests || ie.status == http.StatusServiceUnavailable || ie.status == http.StatusBadGateway || ie.status == http.StatusGatewayTimeout
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// sendPushEvent posts the event, retrying when ingest says it is busy or
// cannot be reached. Re-sends are safe: ingest deduplicates them.
func sendPushEvent(ctx context.Context, target, token string, payload []byte, timeout time.Duration, retries int) ([]byte, error) {
	client := &http.Client{Timeout: timeout}
	for attempt := 0; ; attempt++ {
		body, wait, err := postPushEvent(ctx, client, target, token, payload)
		if err == nil {
			return body, nil
		}
		if attempt >= retries || !retryable(err) {
			var ie ingestError
			if !errors.As(err, &ie) && ctx.Err() == nil {
				return nil, fmt.Errorf("cannot reach Customs ingest at %s (is it running? check --url): %w", target, err)
			}
			return nil, err
		}
		if wait <= 0 {
			wait = time.Duration(1<<attempt) * time.Second
		}
		wait = min(wait, 30*time.Second)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gave up: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

func postPushEvent(ctx context.Context, client *http.Client, target, token string, payload []byte) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", "customsctl")
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return body, 0, nil
	}
	var eb struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	reason := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &eb) == nil && (eb.Reason != "" || eb.Error != "") {
		reason = firstNonEmpty(eb.Reason, eb.Error)
	}
	if reason == "" {
		reason = http.StatusText(resp.StatusCode)
	}
	var wait time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = time.Duration(s) * time.Second
	}
	return nil, wait, ingestError{status: resp.StatusCode, reason: reason}
}

func printPushResult(w io.Writer, body []byte) error {
	var resp struct {
		Accepted []struct {
			Registry   string `json:"registry"`
			Repository string `json:"repository"`
			Digest     string `json:"digest"`
			Tag        string `json:"tag"`
			EventID    string `json:"event_id"`
			Sequence   uint64 `json:"stream_sequence"`
			Duplicate  bool   `json:"duplicate"`
		} `json:"accepted"`
		Ignored []struct {
			Reason string `json:"reason"`
		} `json:"ignored"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("unexpected answer from ingest: %w", err)
	}
	for _, a := range resp.Accepted {
		ref := a.Registry + "/" + a.Repository
		if a.Tag != "" {
			ref += ":" + a.Tag
		}
		note := "recorded"
		if a.Duplicate {
			note = "already recorded"
		}
		fmt.Fprintf(w, "%s %s@%s (event %s)\n", note, ref, a.Digest, a.EventID)
	}
	for _, ig := range resp.Ignored {
		fmt.Fprintf(w, "ignored: %s\n", ig.Reason)
	}
	return nil
}
