"""flowbb.eval"""
