"""flowbb.flow"""
