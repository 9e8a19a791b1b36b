package promotion

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// PublicKey is a trusted cosign public key, parsed once: verifiers are
// cached for the life of the service so a promotion never re-reads or
// re-parses a key.
type PublicKey struct {
	// Name is how rules refer to the key ("release"), from "name=path" in
	// the configuration or the file name without extension.
	Name string
	// ID is "sha256:" + hex SHA-256 of the DER public key, as the signer
	// reports it in artifact.signed.
	ID       string
	Verifier signature.Verifier
}

// ParsePublicKey parses a PEM public key (cosign.pub).
func ParsePublicKey(name string, pemBytes []byte) (*PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", name, err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", name, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", name, err)
	}
	sum := sha256.Sum256(der)
	return &PublicKey{Name: name, ID: "sha256:" + hex.EncodeToString(sum[:]), Verifier: v}, nil
}

// LoadPublicKeys reads a comma-separated list of "name=path" or "path".
func LoadPublicKeys(spec string) ([]*PublicKey, error) {
	var keys []*PublicKey
	names := map[string]bool{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, file, ok := strings.Cut(item, "=")
		if !ok {
			file = item
			name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		}
		if names[name] {
			return nil, fmt.Errorf("public key name %q used twice", name)
		}
		names[name] = true
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("public key %s: %w", name, err)
		}
		k, err := ParsePublicKey(name, b)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public keys configured: nothing could ever be verified")
	}
	return keys, nil
}
