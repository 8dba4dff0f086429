//! The page shell every dashboard page shares: navigation (only what the principal's role may
//! open), who is signed in, sign-out, and the CSRF field forms carry.

use maud::{DOCTYPE, Markup, html};

use crate::middleware::CSRF_FIELD;
use central_core::auth::{Credential, Permission, Principal};

/// The navigation's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Sites,
    Certificates,
    Rollout,
    Audit,
    Alerts,
    Notifications,
    Account,
}

impl Nav {
    const ALL: [Nav; 8] = [
        Nav::Overview,
        Nav::Sites,
        Nav::Certificates,
        Nav::Rollout,
        Nav::Audit,
        Nav::Alerts,
        Nav::Notifications,
        Nav::Account,
    ];

    fn href(self) -> &'static str {
        match self {
            Nav::Overview => "/",
            Nav::Sites => "/sites",
            Nav::Certificates => "/certificates",
            Nav::Rollout => "/rollout",
            Nav::Audit => "/audit",
            Nav::Alerts => "/alerts",
            Nav::Notifications => "/notifications",
            Nav::Account => "/account",
        }
    }

    /// Japanese, then English.
    fn label(self) -> (&'static str, &'static str) {
        match self {
            Nav::Overview => ("概況", "Overview"),
            Nav::Sites => ("施設", "Sites"),
            Nav::Certificates => ("証明書", "Certificates"),
            Nav::Rollout => ("導入・配信", "Rollout"),
            Nav::Audit => ("監査", "Audit"),
            Nav::Alerts => ("アラート", "Alerts"),
            Nav::Notifications => ("通知", "Notifications"),
            Nav::Account => ("アカウント", "Account"),
        }
    }

    fn needs(self) -> Option<Permission> {
        match self {
            Nav::Audit => Some(Permission::ViewAudit),
            Nav::Notifications => Some(Permission::Administer),
            Nav::Account => None,
            _ => Some(Permission::ViewFleet),
        }
    }
}

/// A hidden form field with the session's CSRF token; every state-changing form has one.
pub(crate) fn csrf_field(principal: &Principal) -> Markup {
    html! {
        @if let Some(token) = &principal.csrf_token {
            input type="hidden" name=(CSRF_FIELD) value=(token);
        }
    }
}

/// A whole page: `title` (Japanese / English) over `body`, with `active` highlighted.
pub fn page(principal: &Principal, active: Nav, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — onshi-fleet" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                header.top {
                    a.brand href="/" { "onshi-fleet" }
                    nav {
                        @for item in Nav::ALL {
                            @if item.needs().is_none_or(|p| principal.may(p)) {
                                @let (ja, en) = item.label();
                                a href=(item.href()) class=[(item == active).then_some("active")]
                                    data-nav=(en.to_lowercase()) {
                                    (ja) " " span.en { (en) }
                                }
                            }
                        }
                    }
                    div.who {
                        span #signed-in-as { (principal.display_name) }
                        " " span.en { (principal.role.label()) }
                        @if principal.credential == Credential::Session {
                            form.inline method="post" action="/logout" {
                                (csrf_field(principal))
                                button #sign-out type="submit" { "サインアウト / Sign out" }
                            }
                        }
                    }
                }
                main #content {
                    (super::freshness::banner())
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}
