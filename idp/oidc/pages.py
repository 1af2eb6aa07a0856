"""The provider's pages: server-rendered, accessible HTML without JavaScript, in Russian and English.

Every value is HTML-escaped; every form carries the CSRF token. The language
comes from ``ui_locales``, then ``Accept-Language``; Russian is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

LANGUAGES = ("ru", "en")

TEXT: dict[str, dict[str, str]] = {
    "ru": {
        "sign_in_title": "Вход",
        "sign_in_intro": "Войдите, чтобы продолжить в «{client}».",
        "identifier": "Телефон или электронная почта",
        "password": "Пароль",
        "sign_in": "Войти",
        "no_account": "Нет учётной записи?",
        "register_title": "Регистрация",
        "register_intro": "Один вход для всех продуктов экосистемы.",
        "name": "Как к вам обращаться",
        "new_password": "Пароль (не короче 8 символов)",
        "register": "Зарегистрироваться",
        "have_account": "Уже есть учётная запись?",
        "failed": "Неверный логин или пароль.",
        "locked": "Слишком много неудачных попыток. Попробуйте позже.",
        "consent_title": "Разрешение",
        "consent_intro": "«{client}» запрашивает доступ к вашим данным:",
        "scope_openid": "ваш идентификатор",
        "scope_profile": "имя, дата рождения и язык",
        "scope_email": "адрес электронной почты",
        "scope_phone": "номер телефона",
        "scope_address": "почтовый адрес",
        "allow": "Разрешить",
        "deny": "Отказать",
        "legacy_title": "Сделать этот вход единым?",
        "legacy_intro": ("Вы вошли с логином и паролем продукта «{product}». Можно сделать их "
                         "единым входом во все продукты экосистемы."),
        "legacy_detail": ("Если согласитесь, пароль будет сохранён заново в защищённом виде, а "
                          "ваше согласие будет записано. Если откажетесь, ничего не будет "
                          "связано."),
        "legacy_agree": "Да, сделать единым входом",
        "legacy_refuse": "Нет, не связывать",
        "refused_title": "Ничего не связано",
        "refused_text": ("Ваш вход в «{product}» не стал единым входом. Вы можете "
                         "зарегистрироваться или войти другим способом."),
        "back_to_sign_in": "Вернуться ко входу",
        "error_title": "Ошибка",
        "error_intro": "Запрос не может быть выполнен.",
        "logout_title": "Выход",
        "logout_confirm": "Выйти из единой учётной записи?",
        "logout": "Выйти",
        "logged_out": "Вы вышли.",
        "invalid_input": "Проверьте введённые данные: {detail}",
        "exists": "Такой вход уже существует. Войдите.",
        "expired": "Время ожидания истекло. Начните вход заново.",
        "language": "English",
        "staff_title": "Вход для сотрудников",
        "staff_intro": "Для операторов и администраторов singleid.",
        "staff_login": "Логин сотрудника",
        "otp_title": "Второй фактор",
        "otp_intro": "Введите шестизначный код из приложения-аутентификатора.",
        "otp_code": "Код",
        "otp_failed": "Неверный или уже использованный код.",
        "confirm": "Подтвердить",
    },
    "en": {
        "sign_in_title": "Sign in",
        "sign_in_intro": "Sign in to continue to “{client}”.",
        "identifier": "Phone or email",
        "password": "Password",
        "sign_in": "Sign in",
        "no_account": "No account yet?",
        "register_title": "Create an account",
        "register_intro": "One login for every product of the ecosystem.",
        "name": "How should we address you",
        "new_password": "Password (at least 8 characters)",
        "register": "Create account",
        "have_account": "Already have an account?",
        "failed": "Wrong login or password.",
        "locked": "Too many failed attempts. Try again later.",
        "consent_title": "Permission",
        "consent_intro": "“{client}” asks to access:",
        "scope_openid": "your identifier",
        "scope_profile": "your name, date of birth and language",
        "scope_email": "your email address",
        "scope_phone": "your phone number",
        "scope_address": "your postal address",
        "allow": "Allow",
        "deny": "Deny",
        "legacy_title": "Make this your ecosystem login?",
        "legacy_intro": ("You signed in with your “{product}” login and password. They can "
                         "become your one login for every product of the ecosystem."),
        "legacy_detail": ("If you agree, the password is stored anew in a protected form and "
                          "your consent is recorded. If you refuse, nothing is linked."),
        "legacy_agree": "Yes, make it my ecosystem login",
        "legacy_refuse": "No, do not link",
        "refused_title": "Nothing was linked",
        "refused_text": ("Your “{product}” login did not become your ecosystem login. You can "
                         "create an account or sign in another way."),
        "back_to_sign_in": "Back to sign in",
        "error_title": "Error",
        "error_intro": "The request cannot be completed.",
        "logout_title": "Sign out",
        "logout_confirm": "Sign out of your ecosystem account?",
        "logout": "Sign out",
        "logged_out": "You are signed out.",
        "invalid_input": "Check what you entered: {detail}",
        "exists": "This login exists already. Sign in instead.",
        "expired": "This took too long. Start signing in again.",
        "language": "Русский",
        "staff_title": "Staff sign-in",
        "staff_intro": "For singleid's operators and administrators.",
        "staff_login": "Staff login",
        "otp_title": "Second factor",
        "otp_intro": "Enter the six-digit code from your authenticator app.",
        "otp_code": "Code",
        "otp_failed": "Wrong code, or one used already.",
        "confirm": "Confirm",
    },
}


def choose_language(ui_locales: str, accept_language: str) -> str:
    for tag in ui_locales.split():
        primary = tag.split("-")[0].lower()
        if primary in LANGUAGES:
            return primary
    for part in accept_language.split(","):
        primary = part.split(";")[0].strip().split("-")[0].lower()
        if primary in LANGUAGES:
            return primary
    return "ru"


@dataclass(frozen=True)
class Page:
    lang: str
    csrf: str

    def t(self, key: str, **values: str) -> str:
        return escape(TEXT[self.lang][key].format(**values))

    def hidden(self, name: str, value: str) -> str:
        return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'

    def form(self, action: str, body: str, **hidden: str) -> str:
        fields = "".join(self.hidden(k, v) for k, v in {"csrf": self.csrf, **hidden}.items())
        return f'<form method="post" action="{escape(action)}">{fields}{body}</form>'

    def render(self, title_key: str, body: str, alert: str = "") -> str:
        title = self.t(title_key)
        notice = (f'<div role="alert" class="alert" id="alert">{escape(alert)}</div>'
                  if alert else "")
        return (
            f'<!DOCTYPE html><html lang="{self.lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title} · singleid</title>"
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:2rem auto;"
            "padding:0 1rem;color:#111}label{display:block;margin-top:1rem;font-weight:600}"
            "input[type=text],input[type=password],input[type=email],input[type=tel]"
            "{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}"
            "button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem}"
            ".alert{border:2px solid #b00020;padding:.5rem;margin:1rem 0}"
            ":focus{outline:3px solid #1a73e8;outline-offset:2px}</style></head>"
            f'<body><main><h1>{title}</h1>{notice}{body}</main></body></html>')


def login_page(page: Page, *, client: str, query: str, login_hint: str = "",
               alert: str = "") -> str:
    described = ' aria-describedby="alert"' if alert else ""
    body = (
        f"<p>{page.t('sign_in_intro', client=client)}</p>"
        + page.form("/login",
                    f'<label for="identifier">{page.t("identifier")}</label>'
                    f'<input type="text" id="identifier" name="identifier" required '
                    f'autocomplete="username" value="{escape(login_hint)}"{described}>'
                    f'<label for="password">{page.t("password")}</label>'
                    f'<input type="password" id="password" name="password" required '
                    f'autocomplete="current-password"{described}>'
                    f'<button type="submit">{page.t("sign_in")}</button>', q=query)
        + f'<p>{page.t("no_account")} <a href="/register?{escape(query)}">'
        f'{page.t("register_title")}</a></p>')
    return page.render("sign_in_title", body, alert)


def register_page(page: Page, *, query: str, alert: str = "", identifier: str = "",
                  name: str = "") -> str:
    body = (
        f"<p>{page.t('register_intro')}</p>"
        + page.form("/register",
                    f'<label for="identifier">{page.t("identifier")}</label>'
                    f'<input type="text" id="identifier" name="identifier" required '
                    f'autocomplete="username" value="{escape(identifier)}">'
                    f'<label for="name">{page.t("name")}</label>'
                    f'<input type="text" id="name" name="name" required maxlength="200" '
                    f'autocomplete="name" value="{escape(name)}">'
                    f'<label for="password">{page.t("new_password")}</label>'
                    f'<input type="password" id="password" name="password" required '
                    f'minlength="8" autocomplete="new-password">'
                    f'<button type="submit">{page.t("register")}</button>', q=query)
        + f'<p>{page.t("have_account")} <a href="/authorize?{escape(query)}">'
        f'{page.t("sign_in")}</a></p>')
    return page.render("register_title", body, alert)


def consent_page(page: Page, *, client: str, scopes: tuple[str, ...], query: str,
                 fresh: str) -> str:
    items = "".join(f"<li>{page.t('scope_' + s)}</li>" for s in scopes
                    if f"scope_{s}" in TEXT[page.lang])
    body = (f"<p>{page.t('consent_intro', client=client)}</p><ul>{items}</ul>"
            + page.form("/consent",
                        f'<button type="submit" name="decision" value="allow">'
                        f'{page.t("allow")}</button> '
                        f'<button type="submit" name="decision" value="deny">'
                        f'{page.t("deny")}</button>', q=query, fresh=fresh))
    return page.render("consent_title", body)


def legacy_page(page: Page, *, product: str, query: str, link: str) -> str:
    body = (f"<p>{page.t('legacy_intro', product=product)}</p>"
            f"<p>{page.t('legacy_detail')}</p>"
            + page.form("/legacy",
                        f'<button type="submit" name="decision" value="agree">'
                        f'{page.t("legacy_agree")}</button> '
                        f'<button type="submit" name="decision" value="refuse">'
                        f'{page.t("legacy_refuse")}</button>', q=query, link=link))
    return page.render("legacy_title", body)


def refused_page(page: Page, *, product: str, query: str) -> str:
    body = (f"<p>{page.t('refused_text', product=product)}</p>"
            f'<p><a href="/authorize?{escape(query)}">{page.t("back_to_sign_in")}</a></p>')
    return page.render("refused_title", body)


def error_page(page: Page, *, error: str, description: str) -> str:
    body = (f"<p>{page.t('error_intro')}</p>"
            f"<p><code>{escape(error)}</code>: {escape(description)}</p>")
    return page.render("error_title", body)


def logout_page(page: Page, **hidden: str) -> str:
    body = (f"<p>{page.t('logout_confirm')}</p>"
            + page.form("/logout", f'<button type="submit">{page.t("logout")}</button>',
                        confirm="yes", **hidden))
    return page.render("logout_title", body)


def logged_out_page(page: Page) -> str:
    return page.render("logout_title", f"<p>{page.t('logged_out')}</p>")


def staff_login_page(page: Page, *, next_path: str, login: str = "", alert: str = "") -> str:
    described = ' aria-describedby="alert"' if alert else ""
    body = (
        f"<p>{page.t('staff_intro')}</p>"
        + page.form("/staff/login",
                    f'<label for="login">{page.t("staff_login")}</label>'
                    f'<input type="text" id="login" name="login" required '
                    f'autocomplete="username" value="{escape(login)}"{described}>'
                    f'<label for="password">{page.t("password")}</label>'
                    f'<input type="password" id="password" name="password" required '
                    f'autocomplete="current-password"{described}>'
                    f'<button type="submit">{page.t("sign_in")}</button>', next=next_path))
    return page.render("staff_title", body, alert)


def staff_otp_page(page: Page, *, next_path: str, alert: str = "") -> str:
    described = ' aria-describedby="alert"' if alert else ""
    body = (
        f"<p>{page.t('otp_intro')}</p>"
        + page.form("/staff/otp",
                    f'<label for="code">{page.t("otp_code")}</label>'
                    f'<input type="text" id="code" name="code" required inputmode="numeric" '
                    f'pattern="[0-9 ]{{6,7}}" autocomplete="one-time-code"{described}>'
                    f'<button type="submit">{page.t("confirm")}</button>', next=next_path))
    return page.render("otp_title", body, alert)
