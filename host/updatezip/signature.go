package updatezip

import (
	"errors"
	"fmt"

	"github.com/packhost/packhost/host/trust"
)

// SigFileName is the signature of pack.json inside an update zip.
const SigFileName = "pack.json.sig"

// Signature states of an inspected zip.
const (
	// SigSigned: signed by a trusted key (Signature.Key names it).
	SigSigned = "signed"
	// SigUnsigned: no pack.json.sig.
	SigUnsigned = "unsigned"
	// SigInvalid: pack.json.sig is malformed or no trusted key verifies it.
	SigInvalid = "invalid"
	// SigUnverified: signed, but the system trusts no key, so nothing
	// could be checked.
	SigUnverified = "unverified"
)

// verifySignature checks sig (the signature file's bytes) against keys and
// returns the state and the name of the key that verified it.
func verifySignature(keys []trust.Key, manifest, sig []byte, present bool) (state, key string, err error) {
	if !present {
		if len(keys) > 0 {
			return SigUnsigned, "", errors.New("the zip is unsigned and this system trusts signing keys (trusted_keys/*.pub); sign it with `host pack sign`")
		}
		return SigUnsigned, "", nil
	}
	if _, err := trust.DecodeSignature(string(sig)); err != nil {
		return SigInvalid, "", fmt.Errorf("%s is not a base64 ed25519 signature", SigFileName)
	}
	if len(keys) == 0 {
		return SigUnverified, "", nil
	}
	k, err := trust.Signer(keys, manifest, string(sig))
	if err == nil {
		return SigSigned, k.Name, nil
	}
	return SigInvalid, "", fmt.Errorf("bad signature: %s is not verified by any trusted key (%s)", SigFileName, trust.KeyNames(keys))
}
