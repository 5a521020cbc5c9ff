// Package trust holds the keys a system trusts and the ed25519 signatures
// made with them: key files, key generation, signing and checking. Update
// zips (host/updatezip) and update feeds (host/feed) are checked by it
// alike.
package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Dir is the folder of trusted public keys (*.pub) in a system directory.
const Dir = "trusted_keys"

// Key is a trusted public key; Name is its file name without ".pub".
type Key struct {
	Name string
	Pub  ed25519.PublicKey
}

// LoadTrustedKeys reads <root>/trusted_keys/*.pub. A missing folder means no
// keys. A key file that cannot be read is an error: silently trusting fewer
// keys than the admin meant would accept unsigned zips.
func LoadTrustedKeys(root string) ([]Key, error) {
	paths, err := filepath.Glob(filepath.Join(root, Dir, "*.pub"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var keys []Key
	for _, p := range paths {
		pub, err := ReadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, Key{Name: strings.TrimSuffix(filepath.Base(p), ".pub"), Pub: pub})
	}
	return keys, nil
}

// ReadPublicKey reads a base64 ed25519 public key file.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	raw, err := decodeKeyFile(path, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PublicKey(raw), nil
}

// ReadPrivateKey reads a base64 ed25519 private key file (as Keygen writes).
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	raw, err := decodeKeyFile(path, ed25519.PrivateKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PrivateKey(raw), nil
}

func decodeKeyFile(path string, size int) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(raw) != size {
		return nil, fmt.Errorf("key %s: not a base64 ed25519 key of %d bytes; make keys with `host keygen`", path, size)
	}
	return raw, nil
}

// Keygen writes a new key pair: <dir>/<name>.key (private, mode 0600) and
// <dir>/<name>.pub. It refuses to overwrite either file.
func Keygen(dir, name string) (privPath, pubPath string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("keygen: %w", err)
	}
	privPath = filepath.Join(dir, name+".key")
	pubPath = filepath.Join(dir, name+".pub")
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return "", "", fmt.Errorf("keygen: %s exists; choose another --name or remove it", p)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("keygen: %w", err)
	}
	if err := writeNew(privPath, []byte(base64.StdEncoding.EncodeToString(priv)+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("keygen: %w", err)
	}
	if err := writeNew(pubPath, []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
		_ = os.Remove(privPath)
		return "", "", fmt.Errorf("keygen: %w", err)
	}
	return privPath, pubPath, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SignManifest returns the signature file's content for the manifest bytes.
func SignManifest(priv ed25519.PrivateKey, manifest []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(priv, manifest)) + "\n")
}

// ErrSignatureFormat: a signature is not base64 of an ed25519 signature.
// ErrNoSigner: no trusted key verifies it. Signer returns them; callers say
// which file or feed it was.
var (
	ErrSignatureFormat = errors.New("not a base64 ed25519 signature")
	ErrNoSigner        = errors.New("not verified by any trusted key")
)

func DecodeSignature(text string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, ErrSignatureFormat
	}
	return raw, nil
}

// Signer returns the trusted key whose ed25519 signature sigText (base64)
// is over data. Update zips and feeds are checked by it alike.
func Signer(keys []Key, data []byte, sigText string) (Key, error) {
	raw, err := DecodeSignature(sigText)
	if err != nil {
		return Key{}, err
	}
	for _, k := range keys {
		if ed25519.Verify(k.Pub, data, raw) {
			return k, nil
		}
	}
	return Key{}, ErrNoSigner
}

// KeyNames lists the keys' names for messages: "a.pub, b.pub".
func KeyNames(keys []Key) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}
