package feed

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/packhost/packhost/host/trust"
)

// ErrBadSignature is returned when no trusted key made the feed's
// signature.
var ErrBadSignature = errors.New("signature does not verify with any trusted key")

// Verify checks a base64 ed25519 signature of data (the signature file's
// text, as for pack.json.sig) against the trusted keys and returns the
// name of the key that made it.
func Verify(keys []trust.Key, data []byte, sigText string) (string, error) {
	k, err := verifyKey(keys, data, sigText)
	return k.Name, err
}

// verifyKey is Verify returning the whole key that made the signature.
func verifyKey(keys []trust.Key, data []byte, sigText string) (trust.Key, error) {
	k, err := trust.Signer(keys, data, sigText)
	switch {
	case errors.Is(err, trust.ErrSignatureFormat):
		return trust.Key{}, fmt.Errorf("%w: the signature is not %d bytes of base64", ErrBadSignature, ed25519.SignatureSize)
	case err != nil:
		return trust.Key{}, fmt.Errorf("%w (tried %s)", ErrBadSignature, trust.KeyNames(keys))
	}
	return k, nil
}

// keyID names a public key in the feed state: the key itself, so renaming
// its file in trusted_keys changes nothing.
func keyID(k trust.Key) string { return "ed25519:" + base64.StdEncoding.EncodeToString(k.Pub) }
