//! A game's wager terms, as GARP reports and the wallet applies them.

use crate::services::DomainError;

use super::*;

/// How a game's wagers work: the suggested wage, how long a period runs before its pot
/// resolves, and the shares of the pot (in tenths of a percent, as GARP reports them) paid
/// to ladder positions 1-5. What the shares leave is carried into the next period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WagerTerms {
    pub wage: i64,
    pub period_secs: i64,
    pub shares_permille: [i64; 5],
}

impl Default for WagerTerms {
    fn default() -> Self {
        Self {
            wage: 1,
            period_secs: 24 * 3600,
            shares_permille: [500, 250, 150, 70, 30],
        }
    }
}

impl WagerTerms {
    const LONGEST_PERIOD_SECS: i64 = 366 * 24 * 3600;

    /// The terms with `update`'s wager fields applied, or why they are invalid.
    pub(super) fn updated(mut self, update: &MetaUpdate) -> Result<Self, DomainError> {
        if let Some(wage) = update.wage {
            if wage < 1 {
                return Err(DomainError::InvalidInput(
                    "wage must be a positive whole number".into(),
                ));
            }
            self.wage = wage;
        }
        if let Some(hours) = update.period_hours {
            let secs = (hours * 3600.0).round();
            if !secs.is_finite() || secs < 1.0 || secs > Self::LONGEST_PERIOD_SECS as f64 {
                return Err(DomainError::InvalidInput(
                    "period_hours must be between 1/3600 (one second) and 8784 (a year)".into(),
                ));
            }
            self.period_secs = secs as i64;
        }
        if let Some(shares) = &update.payout_shares {
            let permille: Vec<f64> = shares.iter().map(|p| (p * 10.0).round()).collect();
            let valid = permille.len() == 5
                && permille.iter().all(|p| p.is_finite() && *p >= 0.0)
                && permille.iter().sum::<f64>() <= 1000.0;
            if !valid {
                return Err(DomainError::InvalidInput(
                    "payout_shares must be 5 percentages (positions 1-5) summing to at most 100"
                        .into(),
                ));
            }
            for (slot, p) in self.shares_permille.iter_mut().zip(permille) {
                *slot = p as i64;
            }
        }
        Ok(self)
    }

    pub(super) fn shares_column(&self) -> String {
        self.shares_permille
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(super) fn from_columns(wage: i64, period_secs: i64, shares: &str) -> Self {
        let mut terms = Self {
            wage,
            period_secs,
            ..Self::default()
        };
        let parsed: Vec<i64> = shares.split(',').filter_map(|p| p.parse().ok()).collect();
        if let Ok(shares) = <[i64; 5]>::try_from(parsed) {
            terms.shares_permille = shares;
        }
        terms
    }
}
