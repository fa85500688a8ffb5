use super::*;

fn all() -> Detector {
    Detector::new(&Builtin::ALL, &[]).unwrap()
}

/// (type name, value) of every finding.
fn found(text: &str) -> Vec<(String, String)> {
    let d = all();
    d.find(text)
        .into_iter()
        .map(|f| (d.name(f.kind).to_string(), text[f.start..f.end].to_string()))
        .collect()
}

fn one(kind: &str, value: &str) -> Vec<(String, String)> {
    vec![(kind.to_string(), value.to_string())]
}

/// Each value, alone and inside a sentence, is found exactly as itself.
fn assert_found(kind: &str, values: &[&str]) {
    for v in values {
        assert_eq!(found(v), one(kind, v), "alone: {v}");
        let text = format!("Please use {v}, thanks.");
        assert_eq!(found(&text), one(kind, v), "in a sentence: {text}");
        let text = format!("({v})\n");
        assert_eq!(found(&text), one(kind, v), "in parentheses: {text}");
    }
}

fn assert_clean(texts: &[&str]) {
    for t in texts {
        assert_eq!(found(t), vec![], "expected nothing in: {t}");
    }
}

#[test]
fn emails() {
    assert_found(
        "email",
        &[
            "ada@example.com",
            "john.doe+news@mail.example.co.uk",
            "A_B-c%d@sub-domain.io",
            "x1@y2.museum",
        ],
    );
    assert_eq!(
        found("mail ada@example.com."),
        one("email", "ada@example.com")
    );
}

#[test]
fn not_emails() {
    assert_clean(&[
        "root@localhost",
        "@decorator def f(): pass",
        "user@host",
        "a@b.c",
        "npm i @scope/package@1.2.3",
        "email me at name [at] example [dot] com",
    ]);
}

#[test]
fn phones() {
    assert_found(
        "phone",
        &[
            "+1 (415) 555-2671",
            "+44 20 7946 0958",
            "+49 30 901820",
            "+33 1 23 45 67 89",
            "+14155552671",
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
            "415 555 2671",
            "1-800-555-0199",
        ],
    );
}

#[test]
fn not_phones() {
    assert_clean(&[
        "released on 2024-01-15",
        "the reply used 1500 tokens",
        "prompt_tokens: 4155552671",
        "zip 12345 and 555-1234",
        "call 123-456-7890",
        "pi is 3.14159265",
        "+1500 tokens",
        "from 10:30 to 11:45",
        "ISBN 978-3-16-148410-0",
        "+12 34",
        "version 415.555.2671.1",
    ]);
}

#[test]
fn credit_cards() {
    assert_found(
        "credit_card",
        &[
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111111111111111",
            "5555 5555 5555 4444",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "4242424242424242",
        ],
    );
    assert_eq!(
        found("order 12 4111 1111 1111 1111"),
        one("credit_card", "4111 1111 1111 1111")
    );
}

#[test]
fn not_credit_cards() {
    assert_clean(&[
        "4111 1111 1111 1112",
        "4111111111111112",
        "5555 5555 5555 5555",
        "4444444444444444",
        "41111111111111111111111",
        "4111 1111-1111 1111",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "timestamp 1700000000000",
        "id 4111111111111111x",
    ]);
}

#[test]
fn luhn_checksum() {
    assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
    assert!(!luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4]));
}

#[test]
fn ibans() {
    assert_found(
        "iban",
        &[
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "GB82 WEST 1234 5698 7654 32",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "NO9386011117947",
        ],
    );
    assert_eq!(
        found("IBAN DE89370400440532013000 BANK DE"),
        one("iban", "DE89370400440532013000")
    );
}

#[test]
fn not_ibans() {
    assert_clean(&[
        "DE89 3704 0044 0532 0130 01",
        "DE88370400440532013000",
        "XX89370400440532013000",
        "DE8937040044053201300",
        "ABC12345678901234567890",
    ]);
    assert_eq!(iban_mod97(b"GB82WEST12345698765432"), 1);
    assert_ne!(iban_mod97(b"GB83WEST12345698765432"), 1);
}

#[test]
fn ip_addresses() {
    assert_found(
        "ip_address",
        &[
            "192.168.1.100",
            "10.0.0.1",
            "8.8.8.8",
            "255.255.255.255",
            "2001:db8::ff00:42:8329",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "fe80::1",
            "::ffff:192.168.1.1",
        ],
    );
    assert_eq!(
        found("the server at 10.0.0.1."),
        one("ip_address", "10.0.0.1")
    );
}

#[test]
fn not_ip_addresses() {
    assert_clean(&[
        "999.1.1.1",
        "version 1.2.3",
        "1.2.3.4.5",
        "v1.2.3.4",
        "std::vector<int> v; a::b(); Foo::Bar::baz",
        "12:30:45",
        "00:1A:2B:3C:4D:5E",
        "dead:beef",
        "size_of::<u64>()",
    ]);
}

#[test]
fn secrets_with_known_shapes() {
    assert_found(
        "secret",
        &[
            "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6l",
            "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-abcDEF_ghi123",
            "sk-1234567890abcdefghijklmnopqrstuvwxyzABCD",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCD",
            "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp",
            "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "gsk_aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2yZ3aB4cD5eF6",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ],
    );
    let pem =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq8Zf\n-----END RSA PRIVATE KEY-----";
    assert_eq!(found(&format!("key:\n{pem}\nend")), one("secret", pem));
}

#[test]
fn generic_high_entropy_tokens() {
    assert_found(
        "secret",
        &[
            "Xk9pQ2mZ7vR4tL8wN3bY6cF1hJ5sD0gA",
            "q8zr2kx7mw4np1vt6yc3bd9hf0sj5lgu",
            "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRlc3Q=",
        ],
    );
    assert_eq!(
        found("Authorization: Bearer Xk9pQ2mZ7vR4tL8wN3bY6cF1hJ5sD0gA"),
        one("secret", "Xk9pQ2mZ7vR4tL8wN3bY6cF1hJ5sD0gA")
    );
    assert_eq!(
        found("token=Xk9pQ2mZ7vR4tL8wN3bY6cF1hJ5sD0gA&x=1"),
        one("secret", "Xk9pQ2mZ7vR4tL8wN3bY6cF1hJ5sD0gA")
    );
}

#[test]
fn not_secrets() {
    assert_clean(&[
        "pip install scikit-learn; sk-learn is short",
        "task-management-system-for-teams",
        "getUserById2FactorAuthentication",
        "src/components/Button2Component/index",
        "request id 8d703ad0-e96e-465e-ac18-aa4876a7ca09",
        "commit 11f6ad8ec52a2984abaafd7c3b516503785c2072",
        "my_variable_name_number_12345678",
        "node_modules/react-dom/cjs/react-dom2",
        "TheQuickBrownFox1JumpsOverTheLazyDog",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1",
        "AKIAIOSFODNN7EXAMPLEXX",
        "feature/add-user-authentication-2fa",
        "internationalization_v2_localization",
    ]);
}

#[test]
fn entropy_and_wordiness() {
    assert!(entropy("aaaa") < 0.01);
    assert!((entropy("abcd") - 2.0).abs() < 1e-9);
    assert!(wordiness("getUserAccountParser") > 0.9);
    assert!(wordiness("HTMLParser_parseInput") > 0.6);
    assert!(wordiness("Xk9pQ2mZ7vR4tL8wN3bY") < 0.2);
}

#[test]
fn ordinary_prose_and_code() {
    assert_clean(&[
        "The quarterly report shows revenue grew 12% to $4.5M in Q3 2024, with 1,234 new customers.",
        "Meeting on 2024-03-15 at 10:30; call ext. 4521. See section 3.2.1 and RFC 7231.",
        "fn main() { let x: Vec<u32> = (0..100).map(|i| i * 2).collect(); println!(\"{:?}\", std::mem::size_of::<u64>()); }",
        "const API_VERSION = \"2023-06-01\"; // max_tokens: 4096, temperature 0.7",
        "The model used 15234 prompt tokens and 512 completion tokens in 2.35 s.",
        "for i in range(1, 1000000): total += i ** 2",
        "SELECT id, name FROM users WHERE created_at > '2024-01-01' LIMIT 50;",
        "git checkout -b feature/add-user-authentication-2fa && git push origin HEAD",
        "curl http://localhost:8080/api/v1/users?page=2 -H 'Accept: application/json'",
        "Matrix [[1, 2], [3, 4]] has determinant -2; 10^9+7 is prime.",
        "Prices: 19.99 EUR, 1 299,00 CHF, 3 x 4 = 12, coordinates 48.8566, 2.3522",
    ]);
}

#[test]
fn several_kinds_in_order_without_overlap() {
    let text =
        "Ada (ada@example.com, +44 20 7946 0958) paid with 4111 1111 1111 1111 from 10.0.0.1.";
    let kinds: Vec<String> = found(text).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["email", "phone", "credit_card", "ip_address"]);
}

#[test]
fn custom_patterns_and_their_errors() {
    let spec = |p: &str| CustomSpec {
        name: "employee_id".into(),
        pattern: p.into(),
    };
    let d = Detector::new(&[], &[spec("EMP-[0-9]{6}")]).unwrap();
    let f = d.find("ask EMP-123456 or EMP-12345");
    assert_eq!(f.len(), 1);
    assert_eq!(d.name(f[0].kind), "employee_id");
    assert_eq!(d.label(f[0].kind), "CUSTOM_EMPLOYEE_ID");
    let e = Detector::new(&[], &[spec("EMP-[0-9")]).unwrap_err();
    assert!(
        e.starts_with("custom[0].pattern: invalid regular expression"),
        "{e}"
    );
    let e = Detector::new(&[], &[spec("x*")]).unwrap_err();
    assert_eq!(e, "custom[0].pattern: matches the empty string");
    let e = Detector::new(&[], &[spec("(?:a{1000}){1000}")]).unwrap_err();
    assert!(e.starts_with("custom[0].pattern:"), "{e}");
}

#[test]
fn only_enabled_entities() {
    let d = Detector::new(&[Builtin::Email], &[]).unwrap();
    let f = d.find("ada@example.com 4111111111111111 10.0.0.1");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, Kind::Builtin(Builtin::Email));
}

#[test]
fn long_digit_runs_stay_linear() {
    let text = "7".repeat(200_000);
    let started = std::time::Instant::now();
    assert!(all().find(&text).is_empty());
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn a_rejected_candidate_lets_later_types_try_the_same_start() {
    // IBAN-shaped but failing mod 97: still a high-entropy secret.
    let token = "DE12AB3CD4EF5GH6IJ7KL8MN9OP0QR1ST";
    assert_eq!(found(&format!("id {token} end")), one("secret", token));
}

#[test]
fn numbers_inside_a_rejected_token_are_still_found() {
    assert_eq!(
        found("ref-4111-1111-1111-1111-abc"),
        one("credit_card", "4111-1111-1111-1111")
    );
    assert_eq!(
        found("see_docs/ip-10.0.0.1-notes"),
        one("ip_address", "10.0.0.1")
    );
}

#[test]
fn custom_error_messages_are_readable() {
    let spec = CustomSpec {
        name: "x".into(),
        pattern: "EMP-[0-9".into(),
    };
    let e = Detector::new(&[], &[spec]).unwrap_err();
    assert_eq!(
        e,
        "custom[0].pattern: invalid regular expression: error: unclosed character class"
    );
}

#[test]
fn custom_patterns_may_use_perl_classes_and_case_folding() {
    let spec = CustomSpec {
        name: "project".into(),
        pattern: r"(?i)\bproject[\s_-]?\w+\d\b".into(),
    };
    let d = Detector::new(&[], &[spec]).unwrap();
    let f = d.find("see PROJECT_apollo7 and project falcon9 not projects");
    assert_eq!(f.len(), 2);
}
