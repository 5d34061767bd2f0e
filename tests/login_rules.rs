//! The login decision's rules (DESIGN §3, §5) with fakes behind the traits: no PAM, no network, no
//! database. The same rules are exercised through the real libpam in `pam_login.rs`.

use lockserver::config::{Config, Secret};
use lockserver::dictionary::{Dictionary, Section};
use lockserver::login::{Login, Phase, Prompter, Resources, Verdict};
use lockserver::service::{
    Access, Approval, Challenge, CodeAnswer, CodeCheck, CodePairing, LockService, PairingFlow, Refusal, RemoteCode,
    Removal, ServiceError, ServiceTotp, Text, TotpEnrolment,
};
use lockserver::store::{LocalTotp, Pairing, PairingStore, PendingPairing, StoreError};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const APP: &str = "AbCdEfGhIjKlMnOpQrSt";
const SECRET: &str = "0123456789abcdefghij0123456789abcdefghij";

fn config(extra: &str) -> Config {
    let text = format!(
        "service = \"latch\"\n{extra}\n[latch]\napp_id = \"{APP}\"\nsecret = \"{SECRET}\"\nurl = \"http://127.0.0.1:9\"\n"
    );
    Config::parse_str(&text).expect("test config")
}

fn paired(user: &str) -> Pairing {
    Pairing {
        user: user.into(),
        account_id: format!("acc-{user}"),
        enabled: true,
        totp_enabled: false,
        totp_id: None,
    }
}

struct FakeStore {
    pairings: Vec<Pairing>,
    fail: Option<StoreError>,
}

impl PairingStore for FakeStore {
    fn get(&self, user: &str, _: Instant) -> Result<Option<Pairing>, StoreError> {
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        Ok(self.pairings.iter().find(|p| p.user == user).cloned())
    }
    fn set_pending(&self, _: &PendingPairing, _: Instant) -> Result<(), StoreError> {
        unreachable!("a login never starts a pairing")
    }
    fn pending(&self, _: &str, _: Instant) -> Result<Option<PendingPairing>, StoreError> {
        unreachable!("a login never reads pending pairings")
    }
    fn insert(&self, _: &Pairing, _: Instant) -> Result<(), StoreError> {
        unreachable!("a login never pairs")
    }
    fn remove(&self, _: &str, _: Instant) -> Result<Option<Pairing>, StoreError> {
        unreachable!("a login never unpairs")
    }
    fn list(&self, _: Instant) -> Result<Vec<Pairing>, StoreError> {
        Ok(self.pairings.clone())
    }
    fn set_totp(&self, _: &str, _: bool, _: Option<&str>, _: Instant) -> Result<(), StoreError> {
        unreachable!()
    }
    fn local_totp(&self, _: &str, _: Instant) -> Result<Option<LocalTotp>, StoreError> {
        Ok(None)
    }
    fn set_local_totp(&self, _: &str, _: Option<&LocalTotp>, _: Instant) -> Result<(), StoreError> {
        Ok(())
    }
    fn accept_totp_step(&self, _: &str, _: u64, _: Instant) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn record_totp_failure(&self, _: &str, _: u64, _: u64, _: Instant) -> Result<u32, StoreError> {
        Ok(1)
    }
    fn totp_failures(&self, _: &str, _: u64, _: u64, _: Instant) -> Result<u32, StoreError> {
        Ok(0)
    }
    fn clear_totp_failures(&self, _: &str, _: Instant) -> Result<(), StoreError> {
        Ok(())
    }
    fn schema_version(&self, _: Instant) -> Result<u32, StoreError> {
        Ok(lockserver::store::sqlite::SCHEMA_VERSION)
    }
    fn migrate(&self, _: Instant) -> Result<lockserver::store::Migrated, StoreError> {
        unreachable!("a login never migrates")
    }
    fn export(&self, _: Instant) -> Result<lockserver::store::Snapshot, StoreError> {
        unreachable!("a login never copies the store")
    }
    fn import(&self, _: &lockserver::store::Snapshot, _: bool, _: Instant) -> Result<(), StoreError> {
        unreachable!("a login never copies the store")
    }
}

/// The refusal of a wrong TOTP code, as Latch gives it.
fn wrong() -> Refusal {
    Refusal {
        code: 306,
        message: "Invalid totp code".into(),
    }
}

/// A service whose status answers are scripted; records the calls.
#[derive(Default)]
struct FakeService {
    status_answers: RefCell<VecDeque<Result<Access<'static>, ServiceError>>>,
    status_calls: RefCell<Vec<(String, Option<String>, bool)>>,
    totp_answers: RefCell<VecDeque<Result<CodeCheck, ServiceError>>>,
    totp_calls: Cell<u32>,
}

impl FakeService {
    fn answering(answer: Result<Access<'static>, ServiceError>) -> FakeService {
        let s = FakeService::default();
        s.status_answers.borrow_mut().push_back(answer);
        s
    }
}

impl LockService for FakeService {
    fn status(&self, account: &str, op: Option<&str>, want_code: bool, _: Instant) -> Result<Access<'_>, ServiceError> {
        self.status_calls
            .borrow_mut()
            .push((account.into(), op.map(String::from), want_code));
        self.status_answers
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Err(ServiceError::Unavailable("no scripted answer".into())))
    }
    fn unpair(&self, _: &str, _: Instant) -> Result<(), ServiceError> {
        unreachable!()
    }
    fn pairing(&self) -> PairingFlow<'_> {
        PairingFlow::Code(self)
    }
    fn totp(&self) -> Option<&dyn ServiceTotp> {
        Some(self)
    }
}

impl CodePairing for FakeService {
    fn pair(&self, _: &str, _: Option<&str>, _: Instant) -> Result<String, ServiceError> {
        unreachable!()
    }
}

impl ServiceTotp for FakeService {
    fn totp_create(&self, _: &str, _: &str, _: Instant) -> Result<TotpEnrolment, ServiceError> {
        unreachable!()
    }
    fn totp_validate(&self, _: &str, _: &str, _: Instant) -> Result<CodeCheck, ServiceError> {
        self.totp_calls.set(self.totp_calls.get() + 1);
        self.totp_answers
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Ok(CodeCheck::Invalid(self.wrong_code())))
    }
    fn wrong_code(&self) -> Refusal {
        wrong()
    }
    fn totp_delete(&self, _: &str, _: Instant) -> Result<Removal, ServiceError> {
        unreachable!()
    }
}

struct Fakes {
    store: FakeStore,
    service: FakeService,
}

impl Resources for Fakes {
    fn store(&mut self, _: Instant) -> Result<&dyn PairingStore, StoreError> {
        Ok(&self.store)
    }
    fn store_fail_mode(&self) -> lockserver::config::FailMode {
        lockserver::config::FailMode::Secure
    }
    fn service(&mut self) -> Result<&dyn LockService, ServiceError> {
        Ok(&self.service)
    }
}

#[derive(Default)]
struct FakePrompter {
    answers: VecDeque<String>,
    prompts: Vec<String>,
    errors: Vec<String>,
    infos: Vec<String>,
}

impl Prompter for FakePrompter {
    fn prompt_secret(&mut self, prompt: &str) -> Option<Zeroizing<String>> {
        self.prompts.push(prompt.into());
        self.answers.pop_front().map(Zeroizing::new)
    }
    fn error(&mut self, text: &str) {
        self.errors.push(text.into());
    }
    fn info(&mut self, text: &str) {
        self.infos.push(text.into());
    }
}

fn decide(config: &Config, op: &str, explicit: bool, phase: Phase, fakes: &mut Fakes, p: &mut FakePrompter) -> Verdict {
    let dict = Dictionary::builtin();
    let login = Login {
        config,
        dictionary: &dict,
        user: "alice",
        operation: op,
        explicit_operation: explicit,
        phase,
        clock: || 1_700_000_000,
    };
    login.decide(fakes, p)
}

fn fakes(pairings: Vec<Pairing>, service: FakeService) -> Fakes {
    Fakes {
        store: FakeStore { pairings, fail: None },
        service,
    }
}

#[test]
fn open_latch_allows_and_closed_latch_denies_with_text() {
    let c = config("");
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(Access::Open)));
    let mut p = FakePrompter::default();
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Allow);

    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(Access::Locked)));
    let mut p = FakePrompter::default();
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Deny);
    assert_eq!(
        p.errors,
        vec![Dictionary::builtin().get(Section::Lock, "locked").to_string()]
    );
}

#[test]
fn operation_rules() {
    let c = config(r#"operations = ["sshd:OPSSHD:true", "sudo:OPSUDO:false"]"#);
    // Found and enabled: that operation id is asked.
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(Access::Open)));
    decide(&c, "sshd", false, Phase::Auth, &mut f, &mut FakePrompter::default());
    assert_eq!(f.service.status_calls.borrow()[0].1.as_deref(), Some("OPSSHD"));
    // Found and disabled: no service call at all.
    let mut f = fakes(vec![paired("alice")], FakeService::default());
    assert_eq!(
        decide(&c, "sudo", false, Phase::Auth, &mut f, &mut FakePrompter::default()),
        Verdict::Allow
    );
    assert!(f.service.status_calls.borrow().is_empty());
    // Not found: application-wide.
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(Access::Open)));
    decide(&c, "login", false, Phase::Auth, &mut f, &mut FakePrompter::default());
    assert_eq!(f.service.status_calls.borrow()[0].1, None);
    // An explicit operation= naming nothing is a configuration error, whatever fail_mode says.
    let c = config("fail_mode = \"safe\"\noperations = [\"sshd:OPSSHD:true\"]");
    let mut f = fakes(vec![paired("alice")], FakeService::default());
    assert_eq!(
        decide(&c, "nosuch", true, Phase::Auth, &mut f, &mut FakePrompter::default()),
        Verdict::ConfigError
    );
}

#[test]
fn unpaired_policies() {
    for (policy, expected) in [
        ("ignore", Verdict::Ignore),
        ("allow", Verdict::Allow),
        ("deny", Verdict::Deny),
    ] {
        let c = config(&format!("unpaired = \"{policy}\""));
        let mut f = fakes(vec![paired("bob")], FakeService::default());
        assert_eq!(
            decide(&c, "sshd", false, Phase::Auth, &mut f, &mut FakePrompter::default()),
            expected
        );
        assert!(
            f.service.status_calls.borrow().is_empty(),
            "no service call for an unpaired user"
        );
    }
    // The service saying "not paired" (201) takes the same path.
    let c = config("unpaired = \"deny\"");
    let mut f = fakes(
        vec![paired("alice")],
        FakeService::answering(Err(ServiceError::NotPaired { code: 201 })),
    );
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut FakePrompter::default()),
        Verdict::Deny
    );
}

#[test]
fn fail_mode_covers_unavailability_only() {
    let down = || Err(ServiceError::Unavailable("connection refused".into()));
    let misconfigured = || {
        Err(ServiceError::Misconfigured {
            code: 102,
            message: "Invalid application signature".into(),
        })
    };
    for (mode, expected_down) in [("secure", Verdict::Unavailable), ("safe", Verdict::Allow)] {
        let c = config(&format!("fail_mode = \"{mode}\""));
        let mut f = fakes(vec![paired("alice")], FakeService::answering(down()));
        assert_eq!(
            decide(&c, "sshd", false, Phase::Auth, &mut f, &mut FakePrompter::default()),
            expected_down
        );
        let mut f = fakes(vec![paired("alice")], FakeService::answering(misconfigured()));
        assert_eq!(
            decide(&c, "sshd", false, Phase::Auth, &mut f, &mut FakePrompter::default()),
            Verdict::ConfigError,
            "a misconfiguration answer denies even with fail_mode = {mode}"
        );
    }
}

#[test]
fn store_failure_denies_but_missing_store_means_unpaired() {
    let c = config("unpaired = \"allow\"\nfail_mode = \"safe\"");
    let mut f = fakes(vec![], FakeService::default());
    f.store.fail = Some(StoreError::Unavailable("disk I/O error".into()));
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut FakePrompter::default()),
        Verdict::ConfigError
    );
    f.store.fail = Some(StoreError::Missing);
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut FakePrompter::default()),
        Verdict::Allow
    );
}

#[test]
fn latch_otp_is_prompted_and_compared() {
    let c = config("[totp]\nmax_attempts = 2").clone();
    let token = || Ok(Access::CodeRequired(Challenge::LocalToken(Secret::new("g2sEXg"))));
    let mut f = fakes(vec![paired("alice")], FakeService::answering(token()));
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["g2sEXg".to_string()]),
        ..Default::default()
    };
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Allow);
    assert_eq!(p.prompts.len(), 1);
    assert!(f.service.status_calls.borrow()[0].2, "auth asks for a code");

    let mut f = fakes(vec![paired("alice")], FakeService::answering(token()));
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["g2sEXG".to_string(), "g2sEX".to_string()]),
        ..Default::default()
    };
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p),
        Verdict::MaxTries
    );
    assert_eq!(p.prompts.len(), 2);
}

#[test]
fn account_phase_never_prompts_and_asks_without_code() {
    let c = config("");
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(Access::Open)));
    let mut p = FakePrompter::default();
    assert_eq!(
        decide(&c, "sshd", false, Phase::Account, &mut f, &mut p),
        Verdict::Allow
    );
    assert!(!f.service.status_calls.borrow()[0].2, "account phase asks with /nootp");
    assert!(p.prompts.is_empty());
}

#[test]
fn latch_totp_prompts_until_max_attempts() {
    let c = config("operations = [\"TOTP:TOTP:true\"]\n[totp]\nmax_attempts = 3");
    let mut pairing = paired("alice");
    pairing.totp_enabled = true;
    pairing.totp_id = Some("totp1".into());
    let service = FakeService::answering(Ok(Access::Open));
    service
        .totp_answers
        .borrow_mut()
        .extend([Ok(CodeCheck::Invalid(wrong())), Ok(CodeCheck::Valid)]);
    let mut f = fakes(vec![pairing.clone()], service);
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["111111".to_string(), "222222".to_string()]),
        ..Default::default()
    };
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Allow);
    assert_eq!(f.service.totp_calls.get(), 2);
    assert_eq!(p.errors.len(), 1, "one wrong-code text");

    // TOTP flag off: no prompt at all.
    let c = config("operations = [\"TOTP:TOTP:false\"]");
    let mut f = fakes(vec![pairing], FakeService::answering(Ok(Access::Open)));
    let mut p = FakePrompter::default();
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Allow);
    assert!(p.prompts.is_empty());
}

#[test]
fn a_service_that_takes_no_more_codes_ends_the_prompts() {
    let c = config("operations = [\"TOTP:TOTP:true\"]\n[totp]\nmax_attempts = 3");
    let mut pairing = paired("alice");
    pairing.totp_enabled = true;
    pairing.totp_id = Some("totp1".into());
    let service = FakeService::answering(Ok(Access::Open));
    let locked = Refusal {
        code: 999,
        message: "too many codes".into(),
    };
    service
        .totp_answers
        .borrow_mut()
        .extend([Ok(CodeCheck::Locked(locked))]);
    let mut f = fakes(vec![pairing], service);
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["111111".to_string(), "222222".to_string()]),
        ..Default::default()
    };
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p),
        Verdict::MaxTries
    );
    assert_eq!(
        f.service.totp_calls.get(),
        1,
        "no code is asked after the service locked"
    );
    assert_eq!(p.prompts.len(), 1);
}

#[test]
fn disabled_config_steps_aside() {
    let c = config("enabled = false");
    let mut f = fakes(vec![paired("alice")], FakeService::default());
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut FakePrompter::default()),
        Verdict::Ignore
    );
}

#[test]
fn a_service_refusal_of_the_status_is_no_outage() {
    let c = config("fail_mode = \"safe\"");
    let refused = Err(ServiceError::Api {
        code: 704,
        message: "Subscription limit".into(),
    });
    let mut f = fakes(vec![paired("alice")], FakeService::answering(refused));
    let mut p = FakePrompter::default();
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Deny);
    assert!(p.errors[0].contains("704"), "{:?}", p.errors);
}

#[test]
fn totp_codes_fail_closed_once_the_service_has_refused_one() {
    let c = config("fail_mode = \"safe\"\noperations = [\"TOTP:TOTP:true\"]\n[totp]\nmax_attempts = 3");
    let mut pairing = paired("alice");
    pairing.totp_enabled = true;
    pairing.totp_id = Some("totp1".into());
    let service = FakeService::answering(Ok(Access::Open));
    service.totp_answers.borrow_mut().extend([
        Ok(CodeCheck::Invalid(wrong())),
        Err(ServiceError::Unavailable("time budget exhausted".into())),
    ]);
    let mut f = fakes(vec![pairing.clone()], service);
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["111111".to_string(), "222222".to_string()]),
        ..Default::default()
    };
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p),
        Verdict::Unavailable
    );

    // Codes that are not 6-8 digits never reach the service.
    let mut f = fakes(vec![pairing], FakeService::answering(Ok(Access::Open)));
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["".to_string(), "12ab56".to_string(), "123".to_string()]),
        ..Default::default()
    };
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p),
        Verdict::MaxTries
    );
    assert_eq!(f.service.totp_calls.get(), 0);
}

// ---------------------------------------------------------------------------------------------------
// A service that asks the person (PingID's shape): pushes and remote codes, with fakes.

fn pingid_config(extra: &str) -> Config {
    let text = format!(
        "service = \"pingid\"\n{extra}\n[pingid]\naccount_id = \"acc\"\napplication_id = \"app\"\ntoken = \"t\"\n\
         api_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\nurl = \"http://127.0.0.1:9\"\n\
         push_timeout_secs = 5\npoll_interval_ms = 100\n"
    );
    Config::parse_str(&text).expect("test config")
}

/// A push whose polls answer from a script (`None`: still waiting); counts polls and cancels.
struct ScriptedPush {
    polls: RefCell<VecDeque<Result<Option<Access<'static>>, ServiceError>>>,
    cancels: std::rc::Rc<Cell<u32>>,
}

impl Approval for ScriptedPush {
    fn poll(&self, _: Instant) -> Result<Option<Access<'_>>, ServiceError> {
        self.polls.borrow_mut().pop_front().unwrap_or(Ok(None))
    }
    fn cancel(&self, _: Instant) {
        self.cancels.set(self.cancels.get() + 1);
    }
    fn patience(&self) -> Duration {
        Duration::from_millis(300)
    }
    fn interval(&self) -> Duration {
        Duration::from_millis(10)
    }
}

fn push(polls: Vec<Result<Option<Access<'static>>, ServiceError>>) -> (Access<'static>, std::rc::Rc<Cell<u32>>) {
    let cancels = std::rc::Rc::new(Cell::new(0));
    let approval = ScriptedPush {
        polls: RefCell::new(polls.into()),
        cancels: cancels.clone(),
    };
    (Access::Pending(Box::new(approval)), cancels)
}

/// A remote code check answering from a script.
struct ScriptedCode(RefCell<VecDeque<Result<CodeAnswer, ServiceError>>>);

impl RemoteCode for ScriptedCode {
    fn verify(&self, _: &str, _: Instant) -> Result<CodeAnswer, ServiceError> {
        self.0
            .borrow_mut()
            .pop_front()
            .unwrap_or(Ok(CodeAnswer::TryAgain(Text("invalid_otp"))))
    }
}

fn remote(answers: Vec<Result<CodeAnswer, ServiceError>>) -> Access<'static> {
    Access::CodeRequired(Challenge::Remote(Box::new(ScriptedCode(RefCell::new(answers.into())))))
}

#[test]
fn a_push_tells_the_user_then_follows_the_answer() {
    let c = pingid_config("");
    let (access, cancels) = push(vec![Ok(None), Ok(None), Ok(Some(Access::Open))]);
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
    let mut p = FakePrompter::default();
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Allow);
    assert_eq!(p.infos, vec!["Approve the login on your phone.".to_string()]);
    assert_eq!(cancels.get(), 0);

    let (access, _) = push(vec![Ok(Some(Access::Refused(Text("rejected"))))]);
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
    let mut p = FakePrompter::default();
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Deny);
    assert_eq!(
        p.errors,
        vec!["Access denied: the login was rejected on your phone.".to_string()]
    );
}

#[test]
fn an_unanswered_push_is_withdrawn_and_refused_after_its_patience() {
    let c = pingid_config("");
    let (access, cancels) = push(vec![]);
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
    let mut p = FakePrompter::default();
    let start = Instant::now();
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Deny);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(cancels.get(), 1, "withdrawn once");
    assert!(p.errors[0].contains("did not answer in time"), "{:?}", p.errors);
}

#[test]
fn once_the_person_was_asked_an_outage_denies_even_when_safe() {
    let c = pingid_config("fail_mode = \"safe\"");
    let (access, _) = push(vec![Ok(None), Err(ServiceError::Unavailable("gone".into()))]);
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
    let mut p = FakePrompter::default();
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p),
        Verdict::Unavailable
    );
    // The same for a code the service checks.
    let access = remote(vec![
        Ok(CodeAnswer::TryAgain(Text("invalid_otp"))),
        Err(ServiceError::Unavailable("gone".into())),
    ]);
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["111111".to_string(), "222222".to_string()]),
        ..Default::default()
    };
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p),
        Verdict::Unavailable
    );
    // Before anyone was asked, an outage is fail_mode's.
    let mut f = fakes(
        vec![paired("alice")],
        FakeService::answering(Err(ServiceError::Unavailable("down".into()))),
    );
    let mut p = FakePrompter::default();
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Allow);
}

#[test]
fn remote_codes_try_again_up_to_max_attempts_and_stop_when_refused() {
    let c = pingid_config("[totp]\nmax_attempts = 3");
    let access = remote(vec![
        Ok(CodeAnswer::TryAgain(Text("invalid_otp"))),
        Ok(CodeAnswer::Valid),
    ]);
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["111111".to_string(), "246810".to_string()]),
        ..Default::default()
    };
    assert_eq!(decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p), Verdict::Allow);
    assert_eq!(p.prompts, vec!["Verification code: ".to_string(); 2]);
    assert_eq!(p.errors, vec!["The verification code is not right.".to_string()]);

    let access = remote(vec![Ok(CodeAnswer::Refused(Text("locked")))]);
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
    let mut p = FakePrompter {
        answers: VecDeque::from(vec!["111111".to_string(), "222222".to_string()]),
        ..Default::default()
    };
    assert_eq!(
        decide(&c, "sshd", false, Phase::Auth, &mut f, &mut p),
        Verdict::MaxTries
    );
    assert_eq!(p.prompts.len(), 1, "refused at once");

    // The account phase cannot prompt: the user is told to come back with keyboard-interactive.
    let access = remote(vec![]);
    let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
    let mut p = FakePrompter::default();
    assert_eq!(decide(&c, "sshd", false, Phase::Account, &mut f, &mut p), Verdict::Deny);
    assert!(p.prompts.is_empty());
    assert!(p.errors[0].contains("keyboard-interactive"), "{:?}", p.errors);
}

/// What the PAM module remembers per sshd connection (`Outcome::lock_refusal`): a push refused or left
/// unanswered is the lock's refusal, so the OpenSSH client's keyboard-interactive retries neither push
/// again nor wait `push_timeout_secs` again; once a code was asked, a refusal is the user's typing.
#[test]
fn a_refused_or_unanswered_push_is_a_lock_refusal_a_code_after_it_is_not() {
    let c = pingid_config("");
    let outcome = |access: Access<'static>, answers: &[&str]| {
        let dict = Dictionary::builtin();
        let login = Login {
            config: &c,
            dictionary: &dict,
            user: "alice",
            operation: "sshd",
            explicit_operation: false,
            phase: Phase::Auth,
            clock: || 1_700_000_000,
        };
        let mut f = fakes(vec![paired("alice")], FakeService::answering(Ok(access)));
        let mut p = FakePrompter {
            answers: answers.iter().map(|a| (*a).to_string()).collect(),
            ..Default::default()
        };
        login.decide_outcome(&mut f, &mut p)
    };
    let (rejected, _) = push(vec![Ok(None), Ok(Some(Access::Refused(Text("rejected"))))]);
    let o = outcome(rejected, &[]);
    assert_eq!(
        (o.verdict, o.lock_refusal),
        (Verdict::Deny, true),
        "rejected on the phone"
    );
    let (unanswered, _) = push(vec![]);
    let o = outcome(unanswered, &[]);
    assert_eq!((o.verdict, o.lock_refusal), (Verdict::Deny, true), "no answer in time");
    let (code_then_nothing, _) = push(vec![Ok(Some(remote(vec![])))]);
    let o = outcome(code_then_nothing, &[]);
    assert_eq!(
        (o.verdict, o.lock_refusal),
        (Verdict::Deny, false),
        "the phone offered a code, none was typed"
    );
}
