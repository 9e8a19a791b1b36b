package signer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"

	// KMS providers register themselves with kms.Get. They need cloud
	// credentials and cannot be exercised on a machine without network.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)

// File names written by GenerateKeyPair, the same as `cosign generate-key-pair`.
const (
	PrivateKeyFile = "cosign.key"
	PublicKeyFile  = "cosign.pub"
	PasswordFile   = "cosign.password"
)

// kmsSchemes are the key reference prefixes served by sigstore's KMS
// providers.
var kmsSchemes = []string{"awskms://", "gcpkms://", "azurekms://", "hashivault://"}

// IsKMSRef reports whether ref is a KMS key URI rather than a file path.
func IsKMSRef(ref string) bool {
	for _, s := range kmsSchemes {
		if strings.HasPrefix(ref, s) {
			return true
		}
	}
	return false
}

// Key is a loaded signing key. The private key is decrypted once, at load:
// scrypt decryption is what makes the cosign CLI slow per image.
type Key struct {
	SV signature.SignerVerifier
	// PublicPEM is the PEM-encoded public key, as in cosign.pub.
	PublicPEM []byte
	// ID is "sha256:" + hex SHA-256 of the DER public key.
	ID string
}

// LoadKey loads a cosign-encrypted private key file, or a KMS key when ref
// is a KMS URI (password is then unused).
func LoadKey(ctx context.Context, ref string, password []byte) (*Key, error) {
	if ref == "" {
		return nil, errors.New("signing key: no key reference")
	}
	var sv signature.SignerVerifier
	if IsKMSRef(ref) {
		ksv, err := kms.Get(ctx, ref, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", ref, err)
		}
		sv = ksv
	} else {
		pemBytes, err := os.ReadFile(ref)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		// Never include the password or key material in errors.
		if sv, err = cosign.LoadPrivateKey(pemBytes, password, nil); err != nil {
			return nil, fmt.Errorf("signing key %s: decrypt: %w", ref, err)
		}
	}
	return newKey(ctx, sv)
}

func newKey(ctx context.Context, sv signature.SignerVerifier) (*Key, error) {
	pub, err := sv.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("signing key: public key: %w", err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("signing key: marshal public key: %w", err)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &Key{SV: sv, PublicPEM: pemBytes, ID: id}, nil
}

// KeyID is the fingerprint of a public key: sha256 of its DER encoding.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// KeyPairFiles are the paths of a generated key pair.
type KeyPairFiles struct {
	PrivateKey string
	PublicKey  string
	Password   string
}

// EnsureKeyPair creates a cosign key pair in dir unless one is there: the
// encrypted private key, a generated password next to it (both 0600) and
// cosign.pub. It is for the one-process runtime's first start; production
// deployments bring their own key or a KMS URI. created reports whether new
// files were written.
func EnsureKeyPair(dir string) (files KeyPairFiles, created bool, err error) {
	files = KeyPairFiles{
		PrivateKey: filepath.Join(dir, PrivateKeyFile),
		PublicKey:  filepath.Join(dir, PublicKeyFile),
		Password:   filepath.Join(dir, PasswordFile),
	}
	if _, err := os.Stat(files.PrivateKey); err == nil {
		if _, err := os.Stat(files.Password); err != nil {
			return files, false, fmt.Errorf("key pair in %s: %s exists without %s", dir, PrivateKeyFile, PasswordFile)
		}
		return files, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return files, false, fmt.Errorf("key pair in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return files, false, fmt.Errorf("key pair dir: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return files, false, fmt.Errorf("key pair password: %w", err)
	}
	password := []byte(base64.RawURLEncoding.EncodeToString(raw))
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return password, nil })
	if err != nil {
		return files, false, fmt.Errorf("generate key pair: %w", err)
	}
	// Password first and the private key last, so a crash in between leaves
	// no key without its password.
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{files.Password, append(password, '\n'), 0o600},
		{files.PublicKey, kb.PublicBytes, 0o644},
		{files.PrivateKey, kb.PrivateBytes, 0o600},
	} {
		if err := writeFileAtomic(f.path, f.data, f.mode); err != nil {
			return files, false, err
		}
	}
	return files, true, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// UseGeneratedKey is for the one-process runtime (`make run`): when cfg has
// no key, it generates a key pair under dataDir/signer on first start (and
// reuses it afterwards) and points cfg at it. It logs where cosign.pub is,
// since that is what `cosign verify --key` needs. It returns the public key
// path, or "" when cfg already had a key.
func UseGeneratedKey(cfg *ServiceConfig, dataDir string, log *slog.Logger) (string, error) {
	if cfg.Key != "" {
		return "", nil
	}
	files, created, err := EnsureKeyPair(filepath.Join(dataDir, "signer"))
	if err != nil {
		return "", err
	}
	cfg.Key, cfg.KeyPasswordFile, cfg.KeyPassword = files.PrivateKey, files.Password, ""
	log.Info("signer uses a generated cosign key pair; verify with: cosign verify --key "+files.PublicKey+" --insecure-ignore-tlog=true <image>@<digest>",
		"public_key", files.PublicKey, "private_key", files.PrivateKey, "created", created)
	return files.PublicKey, nil
}
