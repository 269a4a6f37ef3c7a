from django.conf import settings


def gateway(request):
    return {"demo_gateway": settings.DEMO_GATEWAY, "allow_signup": settings.ALLOW_SIGNUP}
