// jwtcheck: an independent check, with the NATS maintainers' own library
// (github.com/nats-io/jwt/v2), of the account JWTs nats-accountd pushed and
// the .creds files it printed. Used by the integration tests only.
//
//	jwtcheck -operator OPERATOR.jwt [-jwts FILE]... [-dir DIR]... [-creds FILE]...
//
// -jwts: a file with one account JWT per line (what a recorder saw pushed);
// -dir: a resolver folder (every *.jwt in it); -creds: a user .creds file.
//
// Every account JWT must decode and verify (signature, type account,
// version 2), be issued by the operator or one of its signing keys (not the
// operator itself under strict_signing_key_usage), carry the jti nats-io/jwt
// computes, a subject that is an account key, a name and an iat, hold no claim
// the library does not understand, and pass Validate() with no error and no
// warning. Every .creds must parse as nats.go parses it, hold a user seed whose
// public key is the JWT's subject, and a user JWT that verifies, passes
// Validate() cleanly and was signed by an account seen here (its key or one of
// its signing keys).
//
// Prints one line per problem (never a seed or a signature) and a summary;
// exit 0 when there is none, 1 when there are problems, 2 on usage errors.
package main

import (
	"bufio"
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type checker struct {
	operatorKeys map[string]bool
	strict       bool
	operator     string
	accounts     map[string]*jwt.AccountClaims // newest seen per account key
	problems     []string
	nJWTs        int
}

func (c *checker) problem(where, format string, args ...any) {
	c.problems = append(c.problems, where+": "+fmt.Sprintf(format, args...))
}

func (c *checker) loadOperator(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	oc, err := jwt.DecodeOperatorClaims(strings.TrimSpace(string(raw)))
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	c.operator = oc.Subject
	c.strict = oc.StrictSigningKeyUsage
	c.operatorKeys = map[string]bool{oc.Subject: true}
	for _, k := range oc.SigningKeys {
		c.operatorKeys[k] = true
	}
	return nil
}

// jti as nats-io/jwt computes it: SHA-512/256 of the JSON of ClaimsData with
// an empty jti, base32 without padding.
func expectedID(cd jwt.ClaimsData) (string, error) {
	cd.ID = ""
	j, err := json.Marshal(cd)
	if err != nil {
		return "", err
	}
	h := sha512.Sum512_256(j)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:]), nil
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case float64:
		return x == 0
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// unknownClaims lists the paths of raw that the library's types dropped or
// changed: a misspelt key, a claim of the wrong shape. Zero values may be
// dropped (omitempty); anything else must come back as it went in.
func unknownClaims(raw, back any, path string, out *[]string) {
	if ra, ok := raw.([]any); ok {
		ba, _ := back.([]any)
		if len(ba) != len(ra) {
			*out = append(*out, path)
			return
		}
		for i := range ra {
			unknownClaims(ra[i], ba[i], fmt.Sprintf("%s[%d]", path, i), out)
		}
		return
	}
	rm, ok := raw.(map[string]any)
	if !ok {
		if !reflect.DeepEqual(raw, back) {
			*out = append(*out, path)
		}
		return
	}
	bm, _ := back.(map[string]any)
	keys := make([]string, 0, len(rm))
	for k := range rm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := k
		if path != "" {
			p = path + "." + k
		}
		bv, present := bm[k]
		if !present {
			if !isZero(rm[k]) {
				*out = append(*out, p)
			}
			continue
		}
		unknownClaims(rm[k], bv, p, out)
	}
}

func payloadJSON(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("expected 3 chunks")
	}
	data, err := base64URLDecode(parts[1])
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(data, &m)
}

func base64URLDecode(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func (c *checker) checkAccount(where, token string) {
	c.nJWTs++
	ac, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		c.problem(where, "does not decode as an account JWT: %v", err)
		return
	}
	where = fmt.Sprintf("%s: account %s (%s)", where, ac.Subject, ac.Name)
	if !nkeys.IsValidPublicAccountKey(ac.Subject) {
		c.problem(where, "sub is not an account public key")
	}
	if !c.operatorKeys[ac.Issuer] {
		c.problem(where, "issuer %s is neither the operator %s nor one of its signing keys", ac.Issuer, c.operator)
	} else if c.strict && ac.Issuer == c.operator {
		c.problem(where, "issued by the operator's own key, but the operator requires signing keys")
	}
	if ac.Name == "" {
		c.problem(where, "no name")
	}
	if ac.IssuedAt <= 0 {
		c.problem(where, "no iat")
	}
	if ac.Type != jwt.AccountClaim || ac.Version != 2 {
		c.problem(where, "type %q version %d, not account version 2", ac.Type, ac.Version)
	}
	if id, err := expectedID(ac.ClaimsData); err != nil || id != ac.ID {
		c.problem(where, "jti %s is not the hash of its claims (nats-io/jwt computes %s)", ac.ID, id)
	}
	vr := jwt.CreateValidationResults()
	ac.Validate(vr)
	for _, e := range vr.Errors() {
		c.problem(where, "Validate() error: %v", e)
	}
	for _, w := range vr.Warnings() {
		c.problem(where, "Validate() warning: %s", w)
	}
	raw, err := payloadJSON(token)
	if err != nil {
		c.problem(where, "payload: %v", err)
		return
	}
	j, _ := json.Marshal(ac)
	var back map[string]any
	_ = json.Unmarshal(j, &back)
	var unknown []string
	unknownClaims(raw, back, "", &unknown)
	for _, p := range unknown {
		c.problem(where, "claim %s is not understood by nats-io/jwt (misspelt, or of the wrong type)", p)
	}
	if prev := c.accounts[ac.Subject]; prev == nil || ac.IssuedAt >= prev.IssuedAt {
		c.accounts[ac.Subject] = ac
	}
}

func (c *checker) checkJWTFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), jwt.MaxTokenSize+16)
	for n := 1; s.Scan(); n++ {
		if line := strings.TrimSpace(s.Text()); line != "" {
			c.checkAccount(fmt.Sprintf("%s:%d", path, n), line)
		}
	}
	return s.Err()
}

func (c *checker) checkDir(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.jwt"))
	if err != nil {
		return err
	}
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		c.checkAccount(p, strings.TrimSpace(string(raw)))
	}
	return nil
}

func (c *checker) checkCreds(path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		c.problem(path, "%v", err)
		return
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		c.problem(path, "no user JWT: %v", err)
		return
	}
	kp, err := jwt.ParseDecoratedUserNKey(raw)
	if err != nil {
		c.problem(path, "no user seed: %v", err)
		return
	}
	pub, err := kp.PublicKey()
	kp.Wipe()
	if err != nil {
		c.problem(path, "seed: %v", err)
		return
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		c.problem(path, "user JWT does not decode: %v", err)
		return
	}
	where := fmt.Sprintf("%s: user %s (%s)", path, uc.Subject, uc.Name)
	if uc.Subject != pub {
		c.problem(where, "the seed's public key is %s, not the JWT's subject", pub)
	}
	if uc.Type != jwt.UserClaim || uc.Version != 2 {
		c.problem(where, "type %q version %d, not user version 2", uc.Type, uc.Version)
	}
	if id, err := expectedID(uc.ClaimsData); err != nil || id != uc.ID {
		c.problem(where, "jti %s is not the hash of its claims (nats-io/jwt computes %s)", uc.ID, id)
	}
	vr := jwt.CreateValidationResults()
	uc.Validate(vr)
	for _, e := range vr.Errors() {
		c.problem(where, "Validate() error: %v", e)
	}
	for _, w := range vr.Warnings() {
		c.problem(where, "Validate() warning: %s", w)
	}
	account := uc.Issuer
	if uc.IssuerAccount != "" {
		account = uc.IssuerAccount
	}
	ac := c.accounts[account]
	if ac == nil {
		c.problem(where, "issued for account %s, whose JWT was not among those checked", account)
	} else if !ac.DidSign(uc) {
		c.problem(where, "issuer %s is neither account %s nor one of its signing keys", uc.Issuer, account)
	}
}

func main() {
	var operator string
	var jwts, dirs, creds list
	flag.StringVar(&operator, "operator", "", "the operator JWT the servers trust")
	flag.Var(&jwts, "jwts", "a file with one account JWT per line (repeatable)")
	flag.Var(&dirs, "dir", "a resolver folder of <account>.jwt files (repeatable)")
	flag.Var(&creds, "creds", "a user .creds file (repeatable)")
	flag.Parse()
	if operator == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: jwtcheck -operator OPERATOR.jwt [-jwts FILE]... [-dir DIR]... [-creds FILE]...")
		os.Exit(2)
	}
	c := &checker{accounts: map[string]*jwt.AccountClaims{}}
	if err := c.loadOperator(operator); err != nil {
		fmt.Fprintln(os.Stderr, "jwtcheck: operator:", err)
		os.Exit(2)
	}
	for _, f := range jwts {
		if err := c.checkJWTFile(f); err != nil {
			fmt.Fprintln(os.Stderr, "jwtcheck:", err)
			os.Exit(2)
		}
	}
	for _, d := range dirs {
		if err := c.checkDir(d); err != nil {
			fmt.Fprintln(os.Stderr, "jwtcheck:", err)
			os.Exit(2)
		}
	}
	for _, f := range creds {
		c.checkCreds(f)
	}
	for _, p := range c.problems {
		fmt.Println(p)
	}
	fmt.Printf("jwtcheck: %d account JWTs (%d accounts), %d creds: %d problems\n",
		c.nJWTs, len(c.accounts), len(creds), len(c.problems))
	if len(c.problems) > 0 {
		os.Exit(1)
	}
}
