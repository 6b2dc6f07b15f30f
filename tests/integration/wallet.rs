//! The wallet ledger: the invariant after every step of random sequences, concurrent
//! debits, and `ecliptic wallet check` catching a tampered ledger.

use std::collections::HashMap;

use ecliptic::services::wallet::{self, MINT, pot_account, user_account};
use ecliptic::store::Store;
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    Grant {
        user: usize,
        amount: i64,
    },
    Wage {
        user: usize,
        pot: usize,
        amount: i64,
    },
    Payout {
        pot: usize,
        user: usize,
        amount: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, 1..1000i64).prop_map(|(user, amount)| Op::Grant { user, amount }),
        (0..4usize, 0..2usize, 1..1500i64).prop_map(|(user, pot, amount)| Op::Wage {
            user,
            pot,
            amount
        }),
        (0..2usize, 0..4usize, 1..1500i64).prop_map(|(pot, user, amount)| Op::Payout {
            pot,
            user,
            amount
        }),
    ]
}

fn open_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::common::database::open_store(dir.path());
    (store, dir)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_ledger_always_balances(ops in proptest::collection::vec(op(), 1..30)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (store, _dir) = open_store();
        let users: Vec<String> = (0..4).map(|_| user_account(Uuid::new_v4())).collect();
        let pots: Vec<String> = (0..2).map(|p| pot_account("game", p)).collect();
        let mut model: HashMap<String, i64> = HashMap::new();
        let mut minted = 0i64;
        for op in ops {
            let (from, to, amount) = match &op {
                Op::Grant { user, amount } => (MINT.to_owned(), users[*user].clone(), *amount),
                Op::Wage { user, pot, amount } => (users[*user].clone(), pots[*pot].clone(), *amount),
                Op::Payout { pot, user, amount } => (pots[*pot].clone(), users[*user].clone(), *amount),
            };
            let (f, t) = (from.clone(), to.clone());
            let outcome = runtime
                .block_on(store.write(move |conn| wallet::transfer(conn, &f, &t, amount, "test", "")))
                .unwrap();
            let covered = from == MINT || model.get(&from).copied().unwrap_or(0) >= amount;
            prop_assert_eq!(outcome.is_ok(), covered, "{:?}", op);
            if covered {
                if from == MINT { minted += amount } else { *model.entry(from).or_default() -= amount }
                *model.entry(to).or_default() += amount;
            }
            let audit = store.read_now(wallet::audit).unwrap();
            prop_assert!(audit.holds(), "{:?}", audit.violations);
            prop_assert_eq!(audit.total_minted, minted);
            for account in users.iter().chain(pots.iter()) {
                let balance = store.read_now(|c| wallet::balance(c, account)).unwrap();
                prop_assert!(balance >= 0);
                prop_assert_eq!(balance, model.get(account).copied().unwrap_or(0));
            }
        }
        store.close();
    }
}

#[tokio::test]
async fn two_debits_that_only_one_balance_covers() {
    let (store, _dir) = open_store();
    let user = Uuid::new_v4();
    assert_eq!(wallet::grant(&store, user, 100).await.unwrap(), 100);
    let account = user_account(user);
    let wage = |pot: i64| {
        let (store, from, to) = (store.clone(), account.clone(), pot_account("g", pot));
        async move {
            store
                .write(move |c| wallet::transfer(c, &from, &to, 60, "wage", ""))
                .await
                .unwrap()
        }
    };
    let (a, b) = tokio::join!(wage(1), wage(2));
    assert_eq!(
        usize::from(a.is_ok()) + usize::from(b.is_ok()),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(
        store.read_now(|c| wallet::balance(c, &account)).unwrap(),
        40
    );
    assert!(store.read_now(wallet::audit).unwrap().holds());
    store.close();
}

#[test]
fn wallet_commands_grant_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let ecliptic = |args: &[&str]| {
        crate::common::database::ecliptic_command(dir.path())
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    assert!(
        ecliptic(&["admin", "create-user", "rich", "--password", "pw-secret"])
            .status
            .success()
    );
    let out = ecliptic(&["wallet", "grant", "rich", "250"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("balance 250"));
    assert!(
        !ecliptic(&["wallet", "grant", "nobody", "1"])
            .status
            .success()
    );
    assert!(!ecliptic(&["wallet", "grant", "rich", "0"]).status.success());
    // An amount that would overflow the balance or the minted total is refused, and
    // nothing of it is written.
    let out = ecliptic(&["wallet", "grant", "rich", &i64::MAX.to_string()]);
    assert!(!out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("largest amount"), "{said}");
    let out = ecliptic(&["wallet", "check"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("minted 250, users 250"));

    // Tamper with a cached balance: the check fails and says why.
    let store = crate::common::database::open_store(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(store.write(|conn| {
            conn.execute(
                "UPDATE wallet_accounts SET balance = balance + 5 WHERE kind = 'user'",
                (),
            )
        }))
        .unwrap();
    store.close();
    let out = ecliptic(&["wallet", "check"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("VIOLATION"),
        "{out:?}"
    );
}

/// One step of a wager sequence.
#[derive(Debug, Clone)]
enum WagerStep {
    Grant {
        user: usize,
        amount: i64,
    },
    Wage {
        user: usize,
        amount: i64,
        repeat: bool,
    },
    Finish {
        play: usize,
        score: i64,
    },
    Resolve,
}

fn wager_step() -> impl Strategy<Value = WagerStep> {
    prop_oneof![
        (0..4usize, 1..200i64).prop_map(|(user, amount)| WagerStep::Grant { user, amount }),
        (0..4usize, 1..150i64, proptest::bool::weighted(0.2)).prop_map(|(user, amount, repeat)| {
            WagerStep::Wage {
                user,
                amount,
                repeat,
            }
        }),
        (0..16usize, -50..100i64).prop_map(|(play, score)| WagerStep::Finish { play, score }),
        Just(WagerStep::Resolve),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn wages_finishes_and_resolutions_keep_the_invariant(
        steps in proptest::collection::vec(wager_step(), 1..40)
    ) {
        use ecliptic::services::wagers::{self, Period, Wage};
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (store, _dir) = open_store();
        let users: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let period = |seq: i64| Period { game_id: "dice".into(), seq, starts_at: seq, ends_at: seq + 1 };
        let shares = [500, 250, 150, 70, 30];
        let mut seq = 1i64;
        let mut plays: Vec<(i64, usize)> = Vec::new();
        let mut request = 0u64;
        for step in steps {
            match step.clone() {
                WagerStep::Grant { user, amount } => {
                    runtime.block_on(wallet::grant(&store, users[user], amount)).unwrap();
                }
                WagerStep::Wage { user, amount, repeat } => {
                    if !repeat || request == 0 {
                        request += 1;
                    }
                    let account = user_account(users[user]);
                    let before = store.read_now(|c| wallet::balance(c, &account)).unwrap();
                    let wage = Wage {
                        period: period(seq),
                        user_id: users[user],
                        display_name: format!("u{user}"),
                        amount,
                        session_id: format!("session-{user}"),
                        request_id: request.to_string(),
                    };
                    let placed = runtime
                        .block_on(store.write(move |c| wagers::place_wage(c, &wage)))
                        .unwrap();
                    let after = store.read_now(|c| wallet::balance(c, &account)).unwrap();
                    match placed {
                        Ok(receipt) if plays.iter().any(|p| p.0 == receipt.play_id) => {
                            prop_assert_eq!(before, after, "a repeated request moved coins");
                        }
                        Ok(receipt) => {
                            prop_assert_eq!(after, before - amount);
                            prop_assert_eq!(receipt.balance, after);
                            plays.push((receipt.play_id, user));
                        }
                        Err(_) => {
                            prop_assert!(before < amount, "refused a covered wage");
                            prop_assert_eq!(before, after);
                        }
                    }
                }
                WagerStep::Finish { play, score } => {
                    if let Some(&(play_id, user)) = plays.get(play % plays.len().max(1)) {
                        let user_id = users[user];
                        let _ = runtime
                            .block_on(store.write(move |c| wagers::finish_play(c, user_id, play_id, score)))
                            .unwrap();
                    }
                }
                WagerStep::Resolve => {
                    let (current, next) = (period(seq), period(seq + 1));
                    let pot_before = store.read_now(|c| wallet::balance(c, &current.pot())).unwrap();
                    let resolved = runtime
                        .block_on(store.write(move |c| wagers::resolve_period(c, &current, &shares, &next)))
                        .unwrap();
                    if let Some(resolution) = resolved {
                        let paid: i64 = resolution.paid.iter().map(|p| p.1).sum();
                        prop_assert_eq!(paid + resolution.carried, pot_before);
                        let next_pot = store.read_now(|c| wallet::balance(c, &period(seq + 1).pot())).unwrap();
                        prop_assert_eq!(next_pot, resolution.carried);
                    }
                    // A second resolution of the same period does nothing.
                    let (again, next) = (period(seq), period(seq + 1));
                    let twice = runtime
                        .block_on(store.write(move |c| wagers::resolve_period(c, &again, &shares, &next)))
                        .unwrap();
                    prop_assert!(twice.is_none());
                    seq += 1;
                }
            }
            let audit = store.read_now(wallet::audit).unwrap();
            prop_assert!(audit.holds(), "after {:?}: {:?}", step, audit.violations);
            for user in &users {
                let balance = store.read_now(|c| wallet::balance(c, &user_account(*user))).unwrap();
                prop_assert!(balance >= 0);
            }
        }
        store.close();
    }
}
