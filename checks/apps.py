"""Bypass vector: the API plane. Apps that read every mailbox without passing the gateway.

The January 2021 Mimecast incident sat entirely here: a stolen app certificate gave its holder
the app's Exchange Web Services access to customers' mailboxes, whatever the mail flow said.
These checks inventory the apps that hold Exchange-wide access (Entra ID application
permissions on the Exchange Online and Microsoft Graph APIs, and Exchange's RBAC for
Applications role assignments), whether that access is scoped to some mailboxes, and how old
their credentials are.

Permission names are resolved from the resource service principals' ``appRoles`` recorded in
the evidence (Graph-ResourceAppRoles), never from a built-in table of role ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auditor.context import CheckContext
from auditor.engine import (
    Mappings,
    Reference,
    Remediation,
    Result,
    Severity,
    Status,
    check,
    ps_literal,
    result,
)
from auditor.evidence import evidence_path
from auditor.models import (
    SECRET,
    AppCredential,
    ApplicationAccessPolicy,
    EvidenceRef,
    GraphApplication,
    GraphAppRoleAssignment,
    GraphResourceServicePrincipal,
    GraphServicePrincipal,
    ManagementRoleAssignment,
)

SERVICE_PRINCIPALS = "Graph-ServicePrincipals"
APPLICATIONS = "Graph-Applications"
RESOURCE_APP_ROLES = "Graph-ResourceAppRoles"
ASSIGNMENTS = "Graph-AppRoleAssignments"
ACCESS_POLICIES = "Get-ApplicationAccessPolicy"
ROLE_ASSIGNMENTS = "Get-ManagementRoleAssignment"

# Microsoft's well-known application ids of the two resource APIs.
EXCHANGE_ONLINE = "00000002-0000-0ff1-ce00-000000000000"
MICROSOFT_GRAPH = "00000003-0000-0000-c000-000000000000"
RESOURCE_NAMES = {EXCHANGE_ONLINE: "Office 365 Exchange Online", MICROSOFT_GRAPH: "Microsoft Graph"}
# Application permissions that reach the content of every mailbox, per resource API.
MAILBOX_PERMISSIONS = {
    EXCHANGE_ONLINE: frozenset({"full_access_as_app", "Mail.Read", "Mail.ReadWrite", "Mail.Send"}),
    MICROSOFT_GRAPH: frozenset({"Mail.Read", "Mail.ReadWrite", "Mail.Send"}),
}
# Runs Exchange cmdlets as the app (with a directory role): can rewrite mail flow.
ADMIN_PERMISSIONS = {EXCHANGE_ONLINE: frozenset({"Exchange.ManageAsApp"})}
# Exchange RBAC for Applications roles that reach mail in every mailbox in scope.
MAIL_RBAC_ROLES = frozenset(role.lower() for role in (
    "Application Mail.Read", "Application Mail.ReadBasic", "Application Mail.ReadWrite",
    "Application Mail.Send", "Application Mail Full Access", "Application Exchange Full Access",
    "Application EWS.AccessAsApp"))
IMPERSONATION = "applicationimpersonation"
RESTRICT_ACCESS = "restrictaccess"

MS_RBAC_APPS = Reference(
    "Microsoft: Role Based Access Control for Applications in Exchange Online",
    "https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac",
)
MS_ACCESS_POLICY = Reference(
    "Microsoft: New-ApplicationAccessPolicy",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-applicationaccesspolicy",
)
MS_IMPERSONATION = Reference(
    "Microsoft: Critical update: ApplicationImpersonation RBAC role deprecation in Exchange Online",
    "https://techcommunity.microsoft.com/blog/exchange/critical-update-applicationimpersonation-rbac-role-deprecation-in-exchange-onlin/4295762",
)
MS_CREDENTIALS = Reference(
    "Microsoft: Best practices for Microsoft Entra application registrations (credentials)",
    "https://learn.microsoft.com/en-us/entra/identity-platform/security-best-practices-for-app-registration",
)
MS_GRAPH_PASSWORD = Reference(
    "Microsoft Graph: passwordCredential and keyCredential resource types",
    "https://learn.microsoft.com/en-us/graph/api/resources/passwordcredential",
)
MIMECAST_2021 = Reference(
    "The Stack: Mimecast certificates compromised (January 2021, with Mimecast's advice)",
    "https://www.thestack.technology/mimecast-certificates-compromised/",
)


@dataclass(frozen=True)
class Grant:
    """One Entra ID application permission held by a service principal, named from evidence."""

    permission: str
    resource: str
    assignment: GraphAppRoleAssignment

    @property
    def label(self) -> str:
        return f"{self.permission} ({self.resource})"


@dataclass
class AppAccess:
    """What one service principal can reach in Exchange Online."""

    principal_id: str
    name: str
    mailbox: list[Grant] = field(default_factory=list)
    admin: list[Grant] = field(default_factory=list)
    rbac: list[ManagementRoleAssignment] = field(default_factory=list)


@dataclass
class Inventory:
    """The applications holding mail permissions, and the grants whose permission could not be
    named."""

    apps: dict[str, AppAccess]  # by service principal object id (lower case)
    unresolved: list[Result]  # assignments whose permission could not be named


def _lower(value: str | None) -> str:
    return (value or "").strip().lower()


def _resources(ctx: CheckContext) -> dict[str, tuple[str, dict[str, str], GraphResourceServicePrincipal]]:
    """Resource service principal id -> (its appId, app role id -> name, the object)."""
    found = {}
    for sp in ctx.objects(RESOURCE_APP_ROLES, GraphResourceServicePrincipal):
        if _lower(sp.appId) in RESOURCE_NAMES and sp.id:
            found[_lower(sp.id)] = (_lower(sp.appId), sp.app_roles(), sp)
    return found


def _inventory(ctx: CheckContext, *, with_rbac: bool) -> Inventory:
    resources = _resources(ctx)
    apps: dict[str, AppAccess] = {}
    unresolved: list[Result] = []
    for assignment in ctx.objects(ASSIGNMENTS, GraphAppRoleAssignment):
        if _lower(assignment.principalType) not in ("", "serviceprincipal") or not assignment.principalId:
            continue
        resource = resources.get(_lower(assignment.resourceId))
        if resource is None:
            unresolved.append(result(
                Status.NOT_EVALUATED, assignment.display_name,
                f"not evaluated: app role assignment to resource {assignment.resourceDisplayName or '?'} "
                f"({assignment.resourceId}) cannot be named: that resource's appRoles are not in "
                f"{RESOURCE_APP_ROLES}", assignment.ref("resourceId"), key=f"unresolved:{assignment.id}"))
            continue
        app_id, roles, _ = resource
        permission = roles.get(_lower(assignment.appRoleId))
        if permission is None:
            unresolved.append(result(
                Status.NOT_EVALUATED, assignment.display_name,
                f"not evaluated: app role {assignment.appRoleId} is not among the appRoles of "
                f"{RESOURCE_NAMES[app_id]} in {RESOURCE_APP_ROLES}", assignment.ref("appRoleId"),
                key=f"unresolved:{assignment.id}"))
            continue
        grant = Grant(permission, RESOURCE_NAMES[app_id], assignment)
        app = apps.setdefault(_lower(assignment.principalId),
                              AppAccess(_lower(assignment.principalId), assignment.display_name))
        if permission in MAILBOX_PERMISSIONS.get(app_id, ()):
            app.mailbox.append(grant)
        elif permission in ADMIN_PERMISSIONS.get(app_id, ()):
            app.admin.append(grant)
    if with_rbac:
        for role in _mail_rbac(ctx):
            principal = _lower(role.RoleAssignee)
            app = apps.setdefault(principal, AppAccess(principal, role.RoleAssigneeName or principal))
            app.rbac.append(role)
    return Inventory(apps, unresolved)


def _mail_rbac(ctx: CheckContext) -> list[ManagementRoleAssignment]:
    """RBAC for Applications assignments of mail roles to service principals."""
    return [a for a in ctx.objects(ROLE_ASSIGNMENTS, ManagementRoleAssignment)
            if _lower(a.RoleAssigneeType) == "serviceprincipal" and _lower(a.Role) in MAIL_RBAC_ROLES]


def _rbac_scope(role: ManagementRoleAssignment) -> str | None:
    """The management scope or administrative unit that limits an assignment, if any."""
    if role.CustomResourceScope:
        return f"management scope {role.CustomResourceScope!r}"
    unit = role.raw.get("CustomRecipientWriteScope")
    if isinstance(unit, str) and unit and _lower(role.RecipientWriteScope) != "organization":
        return f"recipient scope {unit!r}"
    return None


def _rbac_ref(role: ManagementRoleAssignment) -> EvidenceRef:
    return role.ref("CustomResourceScope") if role.CustomResourceScope else role.ref("RecipientWriteScope")


def _principals(ctx: CheckContext) -> dict[str, GraphServicePrincipal]:
    return {_lower(sp.id): sp for sp in ctx.objects(SERVICE_PRINCIPALS, GraphServicePrincipal) if sp.id}


def _principal_for(principals: dict[str, GraphServicePrincipal], key: str) -> GraphServicePrincipal | None:
    """A service principal by object id, or by appId (RBAC assignments may name either)."""
    return principals.get(key) or next((sp for sp in principals.values() if _lower(sp.appId) == key), None)


def _file_ref(key: str, observed: object = None) -> EvidenceRef:
    return EvidenceRef(file=evidence_path(key), pointer="", observed=observed)


def _days(span: timedelta) -> int:
    return span.days


def _date(moment: datetime) -> str:
    return moment.date().isoformat()


# --- APP-001 -------------------------------------------------------------------------------


def _long_lived(app: GraphServicePrincipal, registration: GraphApplication | None,
                as_of: datetime, limit: timedelta) -> AppCredential | None:
    """A usable credential older than, or valid for longer than, the limit (the escalation)."""
    owners: Sequence[GraphServicePrincipal | GraphApplication] = (
        (app, registration) if registration else (app,))
    for owner in owners:
        for cred in owner.credentials().items:
            if cred.endDateTime and cred.endDateTime <= as_of:
                continue
            start, end = cred.startDateTime, cred.endDateTime
            if end is None or (start and (as_of - start > limit or end - start > limit)):
                return cred
    return None


@check(
    id="APP-001",
    title="App with mailbox-wide access is not scoped to specific mailboxes",
    severity=Severity.HIGH,
    rationale=(
        "An application permission such as full_access_as_app (EWS) or Mail.Read / Mail.ReadWrite "
        "/ Mail.Send reaches every mailbox, and the app uses it without passing the gateway. "
        "Whoever holds the app's certificate or secret holds that access: in January 2021 a "
        "certificate stolen from Mimecast gave its thief the EWS access of the customers' apps. "
        "An application access policy (RestrictAccess) or an RBAC for Applications assignment "
        "with a management scope limits the app to the mailboxes it needs. RBAC scopes do not "
        "restrict a permission consented in Entra ID: the two grants are independent."
    ),
    remediation=Remediation(
        "Restrict each app to the mailboxes it serves: an application access policy on a "
        "mail-enabled security group, or (Microsoft's replacement) RBAC for Applications with a "
        "management scope, after removing the unscoped Entra ID consent.",
        "New-ApplicationAccessPolicy -AppId <AppId> -PolicyScopeGroupId <group> "
        "-AccessRight RestrictAccess -Description 'Restrict <app>'\n"
        "# or RBAC for Applications (then remove the Entra ID application permission):\n"
        "New-ManagementScope -Name '<app> mailboxes' -RecipientRestrictionFilter "
        "\"MemberOfGroup -eq '<group DN>'\"\n"
        "New-ManagementRoleAssignment -App <AppId> -Role 'Application Mail.Read' "
        "-CustomResourceScope '<app> mailboxes'",
    ),
    requires=(ASSIGNMENTS, RESOURCE_APP_ROLES, SERVICE_PRINCIPALS, ACCESS_POLICIES),
    uses=(APPLICATIONS, ROLE_ASSIGNMENTS),
    references=(MS_RBAC_APPS, MS_ACCESS_POLICY, MIMECAST_2021),
    mappings=Mappings(attack=("T1114.002", "T1199", "T1550.001", "T1552.004")),
    legitimate=(
        "An archive, continuity or API-security app (Mimecast Sync & Recover, Proofpoint, "
        "Abnormal, ...) whose mailbox permission is restricted by a RestrictAccess application "
        "access policy, or granted only through RBAC for Applications with a management scope "
        "or administrative unit; a disabled service principal. Presence alone is not flagged."
    ),
)
def app_mailbox_access_unscoped(ctx: CheckContext) -> Iterator[Result]:
    with_rbac = ctx.available(ROLE_ASSIGNMENTS)
    inventory = _inventory(ctx, with_rbac=with_rbac)
    yield from inventory.unresolved
    if not with_rbac:
        yield result(Status.NOT_EVALUATED, "RBAC for Applications",
                     f"not evaluated: {ROLE_ASSIGNMENTS} was not usable, so mailbox access granted "
                     "through Exchange RBAC for Applications was not examined",
                     _file_ref(ROLE_ASSIGNMENTS), key="rbac")
    principals = _principals(ctx)
    registrations = ({_lower(a.appId): a for a in ctx.objects(APPLICATIONS, GraphApplication)}
                     if ctx.available(APPLICATIONS) else {})
    policies = ctx.objects(ACCESS_POLICIES, ApplicationAccessPolicy)
    examined = [app for app in inventory.apps.values() if app.mailbox or app.rbac]
    for app in sorted(examined, key=lambda a: a.name.lower()):
        yield _scope_verdict(ctx, app, _principal_for(principals, app.principal_id), policies,
                             registrations)
    if not examined:
        yield result(Status.PASS, "apps with mailbox-wide access",
                     "no service principal holds a mailbox-wide application permission "
                     "(full_access_as_app, Mail.Read, Mail.ReadWrite, Mail.Send) or an RBAC for "
                     "Applications mail role", _file_ref(ASSIGNMENTS), key="none", summary=True)


def _scope_verdict(ctx: CheckContext, app: AppAccess, sp: GraphServicePrincipal | None,
                   policies: Sequence[ApplicationAccessPolicy],
                   registrations: dict[str, GraphApplication]) -> Result:
    refs = [g.assignment.ref("appRoleId", note=g.label) for g in app.mailbox]
    refs += [r.ref("Role") for r in app.rbac]
    if sp is None:
        return result(Status.NOT_EVALUATED, app.name,
                      f"not evaluated: service principal {app.principal_id} holds mailbox-wide "
                      f"access but is not in {SERVICE_PRINCIPALS}, so its appId (what access "
                      "policies name) is unknown", *refs, key=app.principal_id)
    resource = f"{sp.display_name} (appId {sp.appId})"
    if sp.accountEnabled is False:
        return result(Status.PASS, resource,
                      "the service principal is disabled and cannot sign in; its mailbox-wide "
                      "access is dormant", sp.ref("accountEnabled"), *refs, key=app.principal_id)
    open_parts: list[str] = []
    scoped_parts: list[str] = []
    fixes: list[str] = []
    if app.mailbox:
        labels = ", ".join(g.label for g in app.mailbox)
        mine = [p for p in policies if _lower(p.AppId) == _lower(sp.appId)]
        restrict = [p for p in mine if _lower(p.AccessRight) == RESTRICT_ACCESS]
        if restrict:
            scoped_parts.append(f"{labels} restricted by an application access policy to "
                                f"{restrict[0].ScopeIdentity!r}")
            refs += [p.ref("ScopeIdentity") for p in restrict]
        elif mine:
            open_parts.append(f"{labels} with only DenyAccess application access policies, which "
                              "exclude one group and leave every other mailbox reachable")
            refs += [p.ref("AccessRight") for p in mine]
        else:
            open_parts.append(f"{labels} consented in Entra ID with no application access policy")
            fixes.append(f"New-ApplicationAccessPolicy -AppId {ps_literal(sp.appId or '')} "
                         f"-PolicyScopeGroupId '<mail-enabled security group>' -AccessRight "
                         f"RestrictAccess -Description {ps_literal('Restrict ' + sp.display_name)}")
    for role in app.rbac:
        if role.Enabled is False:
            continue
        scope = _rbac_scope(role)
        if scope:
            scoped_parts.append(f"RBAC role {role.Role!r} limited to {scope}")
        else:
            open_parts.append(f"RBAC role {role.Role!r} for the whole organisation")
            fixes.append(f"Set-ManagementRoleAssignment -Identity {ps_literal(role.display_name)} "
                         "-CustomResourceScope '<management scope>'")
        refs.append(_rbac_ref(role))
    if not open_parts:
        return result(Status.PASS, resource, "mailbox-wide access is scoped: " + "; ".join(scoped_parts),
                      *refs, key=app.principal_id)
    message = ("reaches every mailbox without passing the gateway: " + "; ".join(open_parts)
               + (f" (scoped: {'; '.join(scoped_parts)})" if scoped_parts else ""))
    severity = None
    long_lived = _long_lived(sp, registrations.get(_lower(sp.appId)), ctx.as_of,
                             ctx.settings.credential_max_age)
    if long_lived is not None:
        severity = Severity.CRITICAL
        message += (f"; and its {long_lived.label} is long-lived (from "
                    f"{_date(long_lived.startDateTime) if long_lived.startDateTime else '?'} to "
                    f"{_date(long_lived.endDateTime) if long_lived.endDateTime else 'no end'}): a "
                    "stolen copy keeps this access for years")
        refs.append(long_lived.ref("startDateTime"))
    return result(Status.FAIL, resource, message, *refs, severity=severity, key=app.principal_id,
                  fix="\n".join(fixes))


# --- APP-002 -------------------------------------------------------------------------------


@check(
    id="APP-002",
    title="Credential of an app with Exchange-wide access is old or was not rotated",
    severity=Severity.MEDIUM,
    rationale=(
        "A certificate or client secret is the whole of an app's identity: whoever copies it "
        "gets the app's access to every mailbox, or to Exchange administration, from anywhere. "
        "The older a credential, the more places it has been (installers, vendors' systems, "
        "backups). After the January 2021 Mimecast certificate compromise, the advice was to "
        "delete the connection and create it again with a new certificate: a credential that "
        "predates such an advisory may be in an attacker's hands."
    ),
    remediation=Remediation(
        "Add a new certificate (preferred) or secret with a short lifetime, switch the app to it, "
        "then remove the old one. Rotate at least yearly, and after any advisory from the app's "
        "vendor. Use --rotated-since DATE to flag credentials older than an advisory.",
        "Remove-MgApplicationPassword -ApplicationId <object id> -KeyId <keyId>\n"
        "$app = Get-MgApplication -ApplicationId <object id>\n"
        "Update-MgApplication -ApplicationId <object id> -KeyCredentials @($app.KeyCredentials | "
        "Where-Object KeyId -ne <keyId>)",
    ),
    requires=(ASSIGNMENTS, RESOURCE_APP_ROLES, SERVICE_PRINCIPALS, APPLICATIONS),
    uses=(ROLE_ASSIGNMENTS,),
    references=(MS_CREDENTIALS, MS_GRAPH_PASSWORD, MIMECAST_2021),
    mappings=Mappings(attack=("T1552.004", "T1550.001", "T1098.001", "T1199")),
    legitimate=(
        "Certificates and secrets newer than the limit (365 days by default, --credential-max-age) "
        "and, with --rotated-since, created after that date; expired credentials (unusable); "
        "apps that sign in with no certificate or secret (managed identities, federated "
        "credentials)."
    ),
)
def app_credential_age(ctx: CheckContext) -> Iterator[Result]:
    with_rbac = ctx.available(ROLE_ASSIGNMENTS)
    inventory = _inventory(ctx, with_rbac=with_rbac)
    yield from inventory.unresolved
    principals = _principals(ctx)
    registrations = {_lower(a.appId): a for a in ctx.objects(APPLICATIONS, GraphApplication)}
    examined = [app for app in inventory.apps.values() if app.mailbox or app.admin or app.rbac]
    rbac_note = "" if with_rbac else f" ({ROLE_ASSIGNMENTS} was not usable: RBAC-only apps not examined)"
    for app in sorted(examined, key=lambda a: a.name.lower()):
        sp = _principal_for(principals, app.principal_id)
        if sp is None:
            yield result(Status.NOT_EVALUATED, app.name,
                         f"not evaluated: service principal {app.principal_id} is not in "
                         f"{SERVICE_PRINCIPALS}, so its credentials are unknown",
                         key=app.principal_id)
            continue
        yield from _credential_results(ctx, app, sp, registrations.get(_lower(sp.appId)))
    if not examined:
        yield result(Status.PASS, "apps with Exchange-wide access",
                     "no service principal holds Exchange-wide access, so no credential was "
                     f"examined{rbac_note}", _file_ref(ASSIGNMENTS), key="none", summary=True)


def _access_label(app: AppAccess) -> str:
    held = [g.permission for g in app.mailbox + app.admin] + [r.Role or "" for r in app.rbac]
    return ", ".join(dict.fromkeys(held))


def _credential_results(ctx: CheckContext, app: AppAccess, sp: GraphServicePrincipal,
                        registration: GraphApplication | None) -> Iterator[Result]:
    resource = f"{sp.display_name} (appId {sp.appId})"
    access = _access_label(app)
    owners: list[tuple[str, GraphServicePrincipal | GraphApplication]] = [("service principal", sp)]
    if registration is not None:
        owners.append(("app registration", registration))
    else:
        publisher = sp.publisherName or sp.appOwnerOrganizationId or "another tenant"
        yield result(Status.NOT_EVALUATED, resource,
                     f"not evaluated: the app registration of this app ({access}) is not in "
                     f"{APPLICATIONS}; it is probably a multi-tenant app published by {publisher}, "
                     "whose certificates and secrets live in the publisher's tenant: ask the vendor "
                     "when they were last rotated", sp.ref("appOwnerOrganizationId"),
                     key=f"{app.principal_id}:registration")
    seen = 0
    for where, owner in owners:
        creds = owner.credentials()
        seen += len(creds.absent) + len(creds.rejected)
        for missing in creds.absent:
            yield result(Status.NOT_EVALUATED, resource,
                         f"not evaluated: the {where}'s {missing} are not in the evidence",
                         owner.ref(missing), key=f"{app.principal_id}:{where}:{missing}")
        for bad in creds.rejected:
            yield result(Status.NOT_EVALUATED, resource,
                         f"not evaluated: a credential of the {where} could not be read: {bad.reason}",
                         EvidenceRef(bad.source.file, bad.pointer, bad.observed),
                         key=f"{app.principal_id}:{bad.pointer}")
        for cred in creds.items:
            seen += 1
            yield _credential_verdict(ctx, resource, access, where, owner, cred)
    if seen == 0 and registration is not None:  # every credential list read, all empty
        yield result(Status.PASS, resource,
                     f"holds {access} and has no certificate or secret (it signs in another way, "
                     "such as a managed identity or a federated credential)",
                     registration.ref("keyCredentials"), registration.ref("passwordCredentials"),
                     key=f"{app.principal_id}:none")


def _credential_fix(where: str, owner: GraphServicePrincipal | GraphApplication,
                    cred: AppCredential) -> str:
    noun = "ServicePrincipal" if where == "service principal" else "Application"
    object_id = ps_literal(owner.id or "")
    key_id = ps_literal(cred.keyId or "")
    if cred.kind == SECRET:
        return f"Remove-Mg{noun}Password -{noun}Id {object_id} -KeyId {key_id}"
    return (f"$owner = Get-Mg{noun} -{noun}Id {object_id}\n"
            f"Update-Mg{noun} -{noun}Id {object_id} -KeyCredentials @($owner.KeyCredentials | "
            f"Where-Object KeyId -ne {key_id})")


def _credential_verdict(ctx: CheckContext, resource: str, access: str, where: str,
                        owner: GraphServicePrincipal | GraphApplication, cred: AppCredential) -> Result:
    key = f"{owner.id}:{cred.keyId or cred.source.pointer}"
    what = f"the {where}'s {cred.label}"
    start, end = cred.startDateTime, cred.endDateTime
    limit = ctx.settings.credential_max_age
    since = ctx.settings.rotated_since
    if end is not None and end <= ctx.as_of:
        return result(Status.PASS, resource, f"{what} expired on {_date(end)} and cannot be used",
                      cred.ref("endDateTime"), key=key)
    if start is None:
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: {what} has no start date, so its age is unknown",
                      cred.ref("startDateTime"), key=key)
    fix = _credential_fix(where, owner, cred)
    until = _date(end) if end else "no end date"
    if since is not None and start < since:
        return result(Status.FAIL, resource,
                      f"{what} was created on {_date(start)}, before {_date(since)} "
                      f"(--rotated-since), and is valid until {until}: it was never rotated since "
                      f"then, and it gives its holder {access}", cred.ref("startDateTime"),
                      severity=Severity.HIGH, key=key, fix=fix)
    age = ctx.as_of - start
    if age > limit:
        return result(Status.FAIL, resource,
                      f"{what} is {_days(age)} days old (created {_date(start)}, valid until "
                      f"{until}), older than the {_days(limit)}-day limit, and gives its holder "
                      f"{access}", cred.ref("startDateTime"), key=key, fix=fix)
    if end is None or end - start > limit:
        lifetime = f"{_days(end - start)} days" if end else "no end date"
        return result(Status.WARN, resource,
                      f"{what} is {_days(age)} days old but valid for {lifetime} (until {until}), "
                      f"longer than the {_days(limit)}-day limit: it will outlive the limit unless "
                      "rotated", cred.ref("endDateTime"), severity=Severity.LOW, key=key)
    return result(Status.PASS, resource,
                  f"{what} was created on {_date(start)} ({_days(age)} days ago) and expires on "
                  f"{until}", cred.ref("startDateTime"), key=key)


# --- APP-003 -------------------------------------------------------------------------------


@check(
    id="APP-003",
    title="Account or app holds ApplicationImpersonation or an unscoped RBAC mail role",
    severity=Severity.HIGH,
    rationale=(
        "ApplicationImpersonation let a service account act as any mailbox over EWS; gateways' "
        "archive and continuity services used such accounts, and their stored credentials were "
        "what the 2021 Mimecast intruder took. Microsoft removed the role from Exchange Online in "
        "February 2025, so an assignment still in the evidence is a relic to remove. Its "
        "successor, RBAC for Applications, gives a service principal mail roles (Application "
        "Mail.Read, Application EWS.AccessAsApp, ...) that reach every mailbox unless the "
        "assignment carries a management scope or an administrative unit."
    ),
    remediation=Remediation(
        "Remove ApplicationImpersonation assignments; give each RBAC for Applications mail role "
        "a management scope (or administrative unit) covering only the mailboxes the app needs.",
        "Remove-ManagementRoleAssignment -Identity <assignment> -Confirm:$false\n"
        "Set-ManagementRoleAssignment -Identity <assignment> -CustomResourceScope <management scope>",
    ),
    requires=(ROLE_ASSIGNMENTS,),
    references=(MS_IMPERSONATION, MS_RBAC_APPS, MIMECAST_2021),
    mappings=Mappings(attack=("T1098.002", "T1078.004", "T1114.002")),
    legitimate=(
        "RBAC for Applications mail roles limited by a management scope or administrative unit "
        "(what Microsoft recommends instead of impersonation); disabled assignments; every other "
        "role assignment (view-only roles of an auditor app, admin role groups) is not examined."
    ),
)
def impersonation_assignments(ctx: CheckContext) -> Iterator[Result]:
    examined = 0
    for role in ctx.objects(ROLE_ASSIGNMENTS, ManagementRoleAssignment):
        name = _lower(role.Role)
        legacy = name == IMPERSONATION
        rbac = _lower(role.RoleAssigneeType) == "serviceprincipal" and name in MAIL_RBAC_ROLES
        if not (legacy or rbac):
            continue
        examined += 1
        holder = f"{role.RoleAssigneeName or role.RoleAssignee} ({role.RoleAssigneeType or 'unknown type'})"
        resource = f"{role.display_name}"
        if role.Enabled is False:
            yield result(Status.PASS, resource, f"the {role.Role} assignment of {holder} is disabled",
                         role.ref("Enabled"), key=resource)
            continue
        scope = _rbac_scope(role)
        remove = f"Remove-ManagementRoleAssignment -Identity {ps_literal(role.display_name)} -Confirm:$false"
        if legacy:
            where = f"limited to {scope}" if scope else "for every mailbox"
            yield result(Status.WARN if scope else Status.FAIL, resource,
                         f"{holder} holds the legacy ApplicationImpersonation role {where}: it can "
                         "act as those mailboxes over EWS with a stored password; Microsoft removed "
                         "the role in February 2025, so remove the assignment and move the service "
                         "to a scoped app", role.ref("Role"), _rbac_ref(role),
                         severity=Severity.MEDIUM if scope else None, key=resource, fix=remove)
        elif scope:
            yield result(Status.PASS, resource, f"{holder} holds {role.Role!r} limited to {scope}",
                         role.ref("Role"), _rbac_ref(role), key=resource)
        else:
            yield result(Status.FAIL, resource,
                         f"{holder} holds {role.Role!r} with no management scope or administrative "
                         "unit: it reaches every mailbox in the organisation", role.ref("Role"),
                         _rbac_ref(role), key=resource,
                         fix=f"Set-ManagementRoleAssignment -Identity {ps_literal(role.display_name)} "
                             "-CustomResourceScope '<management scope>'")
    if not examined:
        yield result(Status.PASS, "ApplicationImpersonation and RBAC for Applications",
                     "no ApplicationImpersonation assignment and no RBAC for Applications mail role "
                     "assigned to a service principal", _file_ref(ROLE_ASSIGNMENTS), key="none",
                     summary=True)


CHECKS = (
    app_mailbox_access_unscoped,
    app_credential_age,
    impersonation_assignments,
)
