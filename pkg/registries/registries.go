// Package registries is the allow-list of registries Customs may pull from,
// with each one's transport options and credentials. Everything that talks
// to a registry on behalf of a webhook goes through it, so a crafted webhook
// cannot make Customs reach an arbitrary host (SSRF).
package registries

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/customs-dev/customs/pkg/artifactref"
)

// ErrNotAllowed is returned for a registry that is not on the allow-list.
var ErrNotAllowed = errors.New("registry is not on the allow-list")

// Registry is one allowed registry.
type Registry struct {
	// Host is host[:port], exactly as it appears in references.
	Host string
	// PlainHTTP talks HTTP instead of HTTPS.
	PlainHTTP bool
	// Insecure skips TLS verification.
	Insecure bool
	// Username and Password override the docker config.json credentials.
	Username string
	Password string
}

// AllowList holds the allowed registries.
type AllowList struct {
	registries map[string]Registry
	keychain   authn.Keychain
}

// Parse reads an allow-list spec: comma-separated hosts, each optionally
// followed by ";plain-http" and/or ";insecure", e.g.
// "ghcr.io,localhost:5000;plain-http,registry.internal;insecure".
// Credentials come from the environment variable
// CUSTOMS_REGISTRY_AUTH_<HOST> ("user:password", host upper-cased with
// every other character as "_"), else from the docker config.json
// ($DOCKER_CONFIG).
func Parse(spec string) (*AllowList, error) {
	al := &AllowList{registries: map[string]Registry{}, keychain: authn.DefaultKeychain}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ";")
		r := Registry{Host: strings.TrimSpace(parts[0])}
		if err := artifactref.ValidateRegistry(r.Host); err != nil {
			return nil, fmt.Errorf("registry allow-list: %w", err)
		}
		for _, opt := range parts[1:] {
			switch strings.TrimSpace(opt) {
			case "plain-http":
				r.PlainHTTP = true
			case "insecure":
				r.Insecure = true
			default:
				return nil, fmt.Errorf("registry allow-list: %s: unknown option %q (want plain-http or insecure)", r.Host, opt)
			}
		}
		if cred, ok := os.LookupEnv(AuthEnvVar(r.Host)); ok {
			user, pass, found := strings.Cut(cred, ":")
			if !found {
				return nil, fmt.Errorf("registry allow-list: %s must be user:password", AuthEnvVar(r.Host))
			}
			r.Username, r.Password = user, pass
		}
		al.Add(r)
	}
	return al, nil
}

// AuthEnvVar is the environment variable holding credentials for host.
func AuthEnvVar(host string) string {
	var b strings.Builder
	b.WriteString("CUSTOMS_REGISTRY_AUTH_")
	for _, c := range strings.ToUpper(host) {
		if (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Add allows a registry, replacing any entry for the same host.
func (a *AllowList) Add(r Registry) {
	if a.registries == nil {
		a.registries = map[string]Registry{}
	}
	if a.keychain == nil {
		a.keychain = authn.DefaultKeychain
	}
	a.registries[r.Host] = r
}

// Hosts lists the allowed hosts, sorted.
func (a *AllowList) Hosts() []string {
	hosts := make([]string, 0, len(a.registries))
	for h := range a.registries {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	return hosts
}

// Lookup returns the registry for host, or ErrNotAllowed.
func (a *AllowList) Lookup(host string) (Registry, error) {
	if a == nil {
		return Registry{}, fmt.Errorf("%w: %q (the allow-list is empty)", ErrNotAllowed, host)
	}
	r, ok := a.registries[host]
	if !ok {
		return Registry{}, fmt.Errorf("%w: %q (allowed: %s)", ErrNotAllowed, host, strings.Join(a.Hosts(), ", "))
	}
	return r, nil
}

// Reference parses a reference after checking its registry is allowed.
func (a *AllowList) Reference(ref string) (name.Reference, Registry, error) {
	host, _, _ := strings.Cut(ref, "/")
	r, err := a.Lookup(host)
	if err != nil {
		return nil, Registry{}, err
	}
	var opts []name.Option
	if r.PlainHTTP {
		opts = append(opts, name.Insecure)
	}
	n, err := name.ParseReference(ref, append(opts, name.StrictValidation)...)
	if err != nil {
		return nil, Registry{}, fmt.Errorf("parse reference %q: %w", ref, err)
	}
	return n, r, nil
}

// Authenticator returns the credentials for r.
func (a *AllowList) Authenticator(r Registry) (authn.Authenticator, error) {
	if r.Username != "" {
		return authn.FromConfig(authn.AuthConfig{Username: r.Username, Password: r.Password}), nil
	}
	reg, err := name.NewRegistry(r.Host)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", r.Host, err)
	}
	auth, err := a.keychain.Resolve(reg)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", r.Host, err)
	}
	return auth, nil
}

// Transport returns the HTTP transport for r. Registry calls show up as
// client spans in the artifact's trace.
func (a *AllowList) Transport(r Registry) http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	if r.Insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opted in per registry
	}
	return otelhttp.NewTransport(t, otelhttp.WithSpanNameFormatter(func(_ string, req *http.Request) string {
		return "registry " + req.Method + " " + req.URL.Host
	}))
}

// RemoteOptions returns go-containerregistry options for r.
func (a *AllowList) RemoteOptions(r Registry) ([]remote.Option, error) {
	auth, err := a.Authenticator(r)
	if err != nil {
		return nil, err
	}
	return []remote.Option{remote.WithAuth(auth), remote.WithTransport(a.Transport(r))}, nil
}
